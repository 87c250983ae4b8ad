"""``rankloop bench api``: the coordinator under load, beside a bare gunicorn endpoint.

gunicorn (``rankloop/commands/gunicorn_conf.py``) serves the app on PostgreSQL with a Redis
broker; the load runs in a separate process on loopback, each simulated annotator (a pool
annotator) fetching the next task, submitting a full ranking, and so on. The default driver is wrk with a Lua script
(``rankloop/bench/annotators.lua``, one connection per annotator): written in C, it leaves the
shared cores to the server, so the server is what gets measured. ``--driver locust`` runs
``rankloop/bench/locustfile.py`` instead (about 1 ms of Python per request, on the same cores).
The same gunicorn settings serve a bare WSGI endpoint in the same run, for scale. Afterwards
the rankings are counted in the database: exactly one per 201 that the load tool saw, none
duplicated. ``--workers`` and ``--threads`` override ``rankloop/commands/gunicorn_conf.py`` (and
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

import json
import os
import runpy
import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import click

from rankloop.bench.load_drivers import (
    ADMIN,
    WRK,
    free_port,
    run_locust,
    run_wrk,
    start_gunicorn,
    stats_row,
    stop_process,
    wrk_row,
)
from rankloop.bench.report import format_table, save_results
from rankloop.bench.turnaround import render_result, turnaround
from rankloop.commands.serve import GUNICORN_CONF


def create_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"rankloop_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
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
            round_rendered(session, render_result(campaign.id, 0, m))
        session.add_all(Annotator(token_hash=hash_token(t)) for t in tokens)
        session.commit()
    return tokens


def services_options(command: Any) -> Any:
    """The options of a benchmark that serves the coordinator: PostgreSQL (a database of its
    own, created and dropped) and Redis."""
    return click.option(
        "--postgres",
        default=os.environ.get(
            "RANKLOOP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        show_default=True,
        help="an admin URL; the benchmark creates and drops its own database",
    )(
        click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)(
            command
        )
    )


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
    "--workers", default=None, type=int, help="gunicorn processes [default: the gunicorn conf]"
)
@click.option(
    "--threads", default=None, type=int, help="threads per gunicorn process [default: the conf]"
)
@services_options
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
    conf = runpy.run_path(str(GUNICORN_CONF))
    workers = workers or int(conf["workers"])
    campaigns, m = 8, 8
    # Each pool annotator ranks each open round once: enough tokens for the whole run.
    annotators = 300 if quick else max(2000, users * seconds * 3)
    rounds_n = 3 if quick else 15
    db_name, db_url = create_database(postgres)
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
        port = free_port()
        bare = start_gunicorn(
            "rankloop.bench.load_drivers:bare_app", port, env, workers, work / "bare.log"
        )
        try:
            if driver == "wrk":
                samples, _ = run_wrk(f"http://127.0.0.1:{port}", users, seconds, bare_env, work)
                rows.append(wrk_row("bare gunicorn POST", samples.get("bare", []), (201,), seconds))
            else:
                stats = run_locust(f"http://127.0.0.1:{port}", users, seconds, bare_env, work)
                rows.append(stats_row("bare gunicorn POST", stats["bare POST"], seconds))
        finally:
            stop_process(bare)

        port = free_port()
        server = start_gunicorn(
            "rankloop.commands.web:create_web_app()", port, env, workers, work / "app.log"
        )
        try:
            if driver == "wrk":
                samples, acknowledged = run_wrk(
                    f"http://127.0.0.1:{port}", users, seconds, load_env, work
                )
            else:
                stats = run_locust(f"http://127.0.0.1:{port}", users, seconds, load_env, work)
        finally:
            stop_process(server)
        if driver == "wrk":
            rows.append(
                wrk_row("GET /api/tasks/next", samples.get("next", []), (200, 204), seconds)
            )
            rows.append(
                wrk_row("POST ranking (submissions)", samples.get("ranking", []), (201,), seconds)
            )
            statuses: dict[str, int] = {}
            for kind, kind_samples in samples.items():
                for _, status in kind_samples:
                    statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1
            meta["statuses"] = statuses
        else:
            rows.append(stats_row("GET /api/tasks/next", stats["GET next"], seconds))
            rows.append(stats_row("POST ranking (submissions)", stats["POST ranking"], seconds))
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
        for name, values in turnaround(app, env, rounds_n, m, work).items():
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
        drop_database(postgres, db_name)
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
