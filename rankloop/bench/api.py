"""``rankloop bench api``: the coordinator under load, beside a bare gunicorn endpoint.

gunicorn (``infra/gunicorn.conf.py``) serves the app on PostgreSQL with a Redis broker; the load
runs in a separate process on loopback, each simulated annotator (a pool annotator) fetching the
next task, submitting a full ranking, and so on. The default driver is wrk with a Lua script
(``rankloop/bench/annotators.lua``, one connection per annotator): written in C, it leaves the
shared cores to the server, so the server is what gets measured. ``--driver locust`` runs
``rankloop/bench/locustfile.py`` instead (about 1 ms of Python per request, on the same cores).
The same gunicorn settings serve a bare WSGI endpoint in the same run, for scale. Afterwards
the rankings are counted in the database: exactly one per 201 that the load tool saw, none
duplicated. ``--workers`` and ``--threads`` override ``infra/gunicorn.conf.py`` (and
``GUNICORN_WORKER_CLASS=sync`` in the environment switches the worker class). With a closed
loop of ``--users`` connections, latency is about users / throughput: compare runs at the same
``--users``.

Round turnaround overhead, measured with a real bookkeeping worker on the ``coord`` queue:
- last ranking in -> next render enqueued: from the commit time of the ranking that completes
  the quorum to the moment the next render message was handed to the broker;
- render done -> round open: from sending the render result (what the GPU worker's ``link``
  does) to the round being open in the database.
"""

from __future__ import annotations

import csv
import json
import math
import os
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from rankloop.bench.report import format_table, save_results

REPO = Path(__file__).resolve().parents[2]
ADMIN = "bench-admin"
WRK = shutil.which("wrk")


def bare_app(environ, start_response):
    """The floor: a WSGI app that reads the body and answers 201 with a small JSON document."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    body = b'{"ranking_id": 1}'
    start_response(
        "201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn(
    target: str, port: int, env: dict[str, str], workers: int, log: Path
) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(REPO / "infra" / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        target,
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env, "GUNICORN_ACCESSLOG": ""},
        stdout=open(log, "wb"),  # noqa: SIM115 (the child keeps it)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
        if log.read_text(errors="replace").count("Booting worker") >= workers and _answers(port):
            time.sleep(2.0)  # the last workers finish importing the app
            return process
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not come up on {port}: {log.read_text()[-2000:]}")


def _answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means a worker is serving
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def _locust(
    host: str, users: int, seconds: int, env: dict[str, str], out: Path
) -> dict[str, dict[str, Any]]:
    prefix = out / f"locust-{uuid.uuid4().hex[:6]}"
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(REPO / "rankloop/bench/locustfile.py"),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--host",
        host,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--stop-timeout",
        "5",
    ]
    subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        timeout=seconds + 120,
    )
    with open(f"{prefix}_stats.csv") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def _wrk(
    host: str, connections: int, seconds: int, env: dict[str, str], out: Path
) -> tuple[dict[str, list[tuple[float, int]]], set[int]]:
    """Run wrk with the annotator script; per endpoint (latency ms, status) samples, and the
    ranking ids answered 201."""
    folder = out / f"wrk-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    command = [
        WRK or "wrk",
        "-t",
        str(connections),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(Path(__file__).with_name("annotators.lua")),
        host,
    ]
    env = {
        **env,
        "RANKLOOP_BENCH_OUT": str(folder),
        "RANKLOOP_BENCH_CONNECTIONS": str(connections),
    }
    run = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr[-2000:]}")
    samples: dict[str, list[tuple[float, int]]] = {}
    acknowledged: set[int] = set()
    for path in sorted(folder.glob("wrk-*.txt")):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue  # a line cut short when wrk stopped
            samples.setdefault(fields[0], []).append((float(fields[1]), int(fields[2])))
            if fields[0] == "ranking" and fields[2] == "201" and fields[3:4] != ["-"]:
                acknowledged.add(int(fields[3]))
    return samples, acknowledged


def _percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of already sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _wrk_row(
    name: str, samples: list[tuple[float, int]], ok: tuple[int, ...], seconds: float
) -> dict[str, Any]:
    latencies = sorted(ms for ms, _ in samples)
    good = sum(1 for _, status in samples if status in ok)
    return {
        "what": name,
        "requests": len(samples),
        "failures": len(samples) - good,
        "per second": good / seconds,
        "p50 ms": _percentile(latencies, 0.50),
        "p99 ms": _percentile(latencies, 0.99),
    }


def _row(name: str, stats: dict[str, Any], seconds: float) -> dict[str, Any]:
    ok = int(stats["Request Count"]) - int(stats["Failure Count"])
    return {
        "what": name,
        "requests": int(stats["Request Count"]),
        "failures": int(stats["Failure Count"]),
        "per second": ok / seconds,
        "p50 ms": float(stats["50%"]),
        "p99 ms": float(stats["99%"]),
    }


def _create_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"rankloop_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(app, campaigns: int, annotators: int, m: int) -> list[str]:
    """Campaigns with one open round each (quorum too large to close) and pool annotators."""
    from service.auth import hash_token, new_token
    from service.db import session_scope
    from service.lifecycle import start
    from service.models import Annotator, Campaign
    from service.rendering import round_rendered
    from service.schemas import CampaignCreate

    tokens = [new_token() for _ in range(annotators)]
    with app.app_context(), session_scope(app) as session:
        for n in range(campaigns):
            body = CampaignCreate(
                prompt=f"bench {n}",
                m=m,
                annotators_per_round=1_000,  # raised below
                rounds=10,
                lease_s=600,
                round_deadline_s=3600,
            )
            settings = body.settings()
            # Beyond the API's cap (1,000): 8 rounds of 1,000 would fill up within a fast run,
            # and then every annotator would get a 204.
            settings["annotators_per_round"] = 10**9
            campaign = Campaign(name=f"bench {n}", prompt=body.prompt, settings=settings)
            session.add(campaign)
            session.commit()
            start(session, campaign.id)  # its render message is not sent: we play the worker
            round_rendered(session, _result(campaign.id, 0, m))
        session.add_all(Annotator(token_hash=hash_token(t)) for t in tokens)
        session.commit()
    return tokens


def _result(campaign_id: str, number: int, m: int) -> dict[str, Any]:
    prefix = f"campaigns/{campaign_id}/rounds/{number:04d}"
    images = [
        {
            "index": i,
            "key": f"{prefix}/images/{i:02d}.png",
            "thumb_key": f"{prefix}/thumbs/{i:02d}.webp",
            "role": "attention" if i == m else "candidate",
        }
        for i in range(m + 1)
    ]
    return {
        "campaign_id": campaign_id,
        "round_number": number,
        "kind": "gradient",
        "images": images,
        "state_key": f"{prefix}/state.npz",
        "manifest_key": f"{prefix}/manifest.json",
        "stats": {},
    }


def _turnaround(
    app, env: dict[str, str], rounds_n: int, m: int, log_dir: Path
) -> dict[str, list[float]]:
    """Median overheads of the two round transitions, with a real coord worker."""
    import datetime as dt

    from sqlalchemy import select

    from service.db import session_scope
    from service.lifecycle import start
    from service.models import Campaign, Ranking, Round, utcnow
    from service.schemas import CampaignCreate

    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "service.worker",
            "worker",
            "-Q",
            "coord",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=open(log_dir / "coord.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from service.tasks import warm_up_consensus

    warm_up_consensus()  # as gunicorn's post_worker_init and the coord worker do
    celery = app.extensions["celery"]
    client = app.test_client()
    to_enqueue: list[float] = []
    to_open: list[float] = []
    try:
        time.sleep(3)  # worker boot
        with app.app_context(), session_scope(app) as session:
            body = CampaignCreate(
                prompt="turnaround",
                m=m,
                annotators_per_round=3,
                rounds=rounds_n + 1,
                tasks_per_annotator=rounds_n + 1,  # the same three annotators rank every round
            )
            campaign = Campaign(name="turnaround", prompt=body.prompt, settings=body.settings())
            session.add(campaign)
            session.commit()
            start(session, campaign.id)  # (not sent: the render results are played below)
            cid = campaign.id
            tokens = [
                client.post(
                    f"/api/campaigns/{cid}/annotators",
                    json={"count": 3},
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ).json["annotators"]
            ]
            tokens = [a["token"] for a in tokens[0]]
        for number in range(rounds_n):
            sent = utcnow()
            celery.send_task(
                "rankloop.coord.round_rendered", args=(_result(cid, number, m),), queue="coord"
            )
            deadline = time.monotonic() + 30
            with app.app_context(), session_scope(app) as session:
                while time.monotonic() < deadline:
                    round_ = session.scalar(
                        select(Round).where(Round.campaign_id == cid, Round.number == number)
                    )
                    if round_ is not None and round_.opened_at is not None:
                        to_open.append((round_.opened_at - sent) / dt.timedelta(milliseconds=1))
                        break
                    session.rollback()
                    time.sleep(0.002)
            for token in tokens:
                headers = {"Authorization": f"Bearer {token}"}
                task = client.get("/api/tasks/next", headers=headers).json
                client.post(
                    f"/api/tasks/{task['task_id']}/ranking",
                    json={"order": [i["id"] for i in task["images"]]},
                    headers=headers,
                )
            with app.app_context(), session_scope(app) as session:
                last = session.scalar(
                    select(Ranking.created_at)
                    .join(Round, Round.id == Ranking.round_id)
                    .where(Round.campaign_id == cid, Round.number == number)
                    .order_by(Ranking.created_at.desc())
                    .limit(1)
                )
                following = session.scalar(
                    select(Round.render_enqueued_at).where(
                        Round.campaign_id == cid, Round.number == number + 1
                    )
                )
                if last is not None and following is not None:
                    to_enqueue.append((following - last) / dt.timedelta(milliseconds=1))
    finally:
        _stop(worker)
    return {"ranking in -> render enqueued": to_enqueue, "render done -> round open": to_open}


@click.command("api")
@click.option("--out", default="bench-results/api.json", show_default=True)
@click.option("--quick", is_flag=True, help="a short smoke run (a few seconds of load)")
@click.option(
    "--driver",
    type=click.Choice(["wrk", "locust"]),
    default="wrk" if WRK else "locust",
    show_default="wrk when it is installed, else locust",
    help="the load tool",
)
@click.option("--users", default=48, show_default=True, help="concurrent annotators (connections)")
@click.option("--seconds", default=30, show_default=True, help="load duration per target")
@click.option(
    "--workers", default=None, type=int, help="gunicorn processes [default: infra/gunicorn.conf.py]"
)
@click.option(
    "--threads", default=None, type=int, help="threads per gunicorn process [default: the conf]"
)
@click.option(
    "--postgres",
    default=os.environ.get(
        "RANKLOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    show_default=True,
    help="an admin URL; the benchmark creates and drops its own database",
)
@click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)
def api_command(
    out: str,
    quick: bool,
    driver: str,
    users: int,
    seconds: int,
    workers: int | None,
    threads: int | None,
    postgres: str,
    redis_url: str,
) -> None:
    """Ranking submissions per second and latency under gunicorn + PostgreSQL, beside a bare endpoint."""
    import redis

    from service.app import create_app
    from service.cli import upgrade
    from service.db import get_engine

    if quick:
        users, seconds = min(users, 8), min(seconds, 4)
    if driver == "wrk" and not WRK:
        raise click.UsageError("wrk is not installed (apt-get install wrk); or use --driver locust")
    conf = runpy.run_path(str(REPO / "infra" / "gunicorn.conf.py"))
    workers = workers or int(conf["workers"])
    campaigns, m = 8, 8
    # Each pool annotator ranks each open round once: enough tokens for the whole run.
    annotators = 300 if quick else max(2000, users * seconds * 3)
    rounds_n = 3 if quick else 15
    db_name, db_url = _create_database(postgres)
    work = Path(tempfile.mkdtemp(prefix="rankloop-bench-api-"))
    prefix = f"rankloop-bench-{uuid.uuid4().hex[:8]}:"
    env = {
        "RANKLOOP_DATABASE_URL": db_url,
        "RANKLOOP_DATABASE_POOL_SIZE": "5",
        "RANKLOOP_DATABASE_MAX_OVERFLOW": "5",
        "RANKLOOP_STORE_URL": str(work / "objects"),
        "RANKLOOP_BROKER_URL": redis_url,
        "RANKLOOP_BROKER_TRANSPORT_OPTIONS": json.dumps({"global_keyprefix": prefix}),
        "RANKLOOP_ADMIN_TOKEN": ADMIN,
        # Limits stay on, with their production storage (Redis, shared by every process).
        "RANKLOOP_RATELIMIT_ANNOTATOR": "1000000 per minute",
        "RANKLOOP_RATELIMIT_STORAGE_URI": redis_url,
        "RANKLOOP_RATELIMIT_KEY_PREFIX": prefix,
    }
    if threads:
        env["GUNICORN_THREADS"] = str(threads)
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "users": users,
        "seconds": seconds,
        "driver": driver,
        "gunicorn_workers": workers,
        "gunicorn_worker_class": os.environ.get("GUNICORN_WORKER_CLASS", conf["worker_class"]),
        "gunicorn_threads": threads or int(conf["threads"]),
        "cores": os.cpu_count(),
        "campaigns": campaigns,
        "m": m,
    }
    app = None
    try:
        upgrade(db_url)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        app = create_app()
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        tokens = _seed(app, campaigns, annotators, m)
        (work / "tokens.txt").write_text("\n".join(tokens))
        acks = work / "acknowledged.txt"
        load_env = {
            "RANKLOOP_BENCH_TOKENS": str(work / "tokens.txt"),
            "RANKLOOP_BENCH_ACKS": str(acks),
        }

        bare_env = {"RANKLOOP_BENCH_BARE": "1"}
        port = _free_port()
        bare = _gunicorn("rankloop.bench.api:bare_app", port, env, workers, work / "bare.log")
        try:
            if driver == "wrk":
                samples, _ = _wrk(f"http://127.0.0.1:{port}", users, seconds, bare_env, work)
                rows.append(
                    _wrk_row("bare gunicorn POST", samples.get("bare", []), (201,), seconds)
                )
            else:
                stats = _locust(f"http://127.0.0.1:{port}", users, seconds, bare_env, work)
                rows.append(_row("bare gunicorn POST", stats["bare POST"], seconds))
        finally:
            _stop(bare)

        port = _free_port()
        server = _gunicorn("service.app:create_app()", port, env, workers, work / "app.log")
        try:
            if driver == "wrk":
                samples, acknowledged = _wrk(
                    f"http://127.0.0.1:{port}", users, seconds, load_env, work
                )
            else:
                stats = _locust(f"http://127.0.0.1:{port}", users, seconds, load_env, work)
        finally:
            _stop(server)
        if driver == "wrk":
            rows.append(
                _wrk_row("GET /api/tasks/next", samples.get("next", []), (200, 204), seconds)
            )
            rows.append(
                _wrk_row("POST ranking (submissions)", samples.get("ranking", []), (201,), seconds)
            )
            statuses: dict[str, int] = {}
            for kind, kind_samples in samples.items():
                for _, status in kind_samples:
                    statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1
            meta["statuses"] = statuses
        else:
            rows.append(_row("GET /api/tasks/next", stats["GET next"], seconds))
            rows.append(_row("POST ranking (submissions)", stats["POST ranking"], seconds))
            acknowledged = (
                {int(line) for line in acks.read_text().split()} if acks.exists() else set()
            )
        from sqlalchemy import text

        with get_engine(app).connect() as connection:
            stored = set(connection.execute(text("SELECT id FROM rankings")).scalars())
            distinct_tasks = connection.execute(
                text("SELECT count(DISTINCT assignment_id) FROM rankings")
            ).scalar()
        meta["rankings_acknowledged"] = len(acknowledged)
        meta["rankings_in_db"] = len(stored)
        meta["acknowledged_missing_from_db"] = len(acknowledged - stored)
        meta["duplicated"] = len(stored) - (distinct_tasks or 0)
        # Stored but never acknowledged = in flight when the load tool stopped (not a loss).
        meta["in_flight_at_stop"] = len(stored - acknowledged)
        meta["none_lost_or_duplicated"] = (
            meta["acknowledged_missing_from_db"] == 0 == meta["duplicated"]
        )
        for name, values in _turnaround(app, env, rounds_n, m, work).items():
            rows.append(
                {
                    "what": f"turnaround: {name}",
                    "requests": len(values),
                    "failures": rounds_n - len(values),
                    "p50 ms": statistics.median(values) if values else None,
                    "p99 ms": max(values) if values else None,
                }
            )
    finally:
        if app is not None:
            get_engine(app).dispose()
        _drop_database(postgres, db_name)
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"*{prefix}*", count=500):  # broker and limiter keys
            client.delete(key)
        shutil.rmtree(work, ignore_errors=True)
    click.echo(
        format_table(rows, ["what", "requests", "failures", "per second", "p50 ms", "p99 ms"])
    )
    click.echo(
        f"rankings: {meta['rankings_acknowledged']} answered 201, {meta['rankings_in_db']} in the "
        f"database ({meta['in_flight_at_stop']} in flight at stop), "
        f"{meta['acknowledged_missing_from_db']} acknowledged but missing, {meta['duplicated']} "
        "duplicated -> "
        f"{'none lost or duplicated' if meta['none_lost_or_duplicated'] else 'MISMATCH'}"
    )
    click.echo("(turnaround rows: p50 = median, p99 column = max over rounds)")
    path = save_results(out, "api", rows, **meta)
    click.echo(f"saved {path}")
