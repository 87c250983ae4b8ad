"""``rankloop up``: everything on one machine (``rankloop serve`` is the production web tier).

``up``: SQLite in ``var/rankloop.sqlite``, the local object store in ``var/objects``, Celery on
kombu's SQLAlchemy transport (``var/broker.sqlite``) with two worker subprocesses (the GPU
worker on queue ``gpu`` with the ``cppn`` generator, the bookkeeping worker on ``coord``), the
web app in a threaded server, the stream process's service (:mod:`service.push.server`: the
pages' live streams, told of changes by SQLite's ``data_version``) on a thread and a port of its
own, and a sweeper thread for deadlines and lost renders (what
``celery beat`` does in production). It creates a demo campaign when the database has none and
prints the dashboard URL, the owner key and an annotator link. ``--simulate N`` adds N simulated
annotators talking HTTP; ``--exit-when-done`` ends once the demo campaign has finished.

This process never imports torch: only the GPU worker subprocess does.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from rankloop.core.contracts import CAMPAIGN_ENDED, VERDICT_ROUND, CampaignStatus, RoundStatus
from rankloop.core.settings import env_name, load_settings, settings_of

DEMO_PROMPT = "a warm orange sunset over the sea, vivid colours"


def celery_worker(app: str, queue: str, env: dict[str, str], log_path: Path,
                  loglevel: str = "INFO") -> subprocess.Popen:  # fmt: skip
    """A ``celery worker`` of ``app`` on ``queue`` (solo pool) in a process group of its own,
    logging to ``log_path`` (also ``rankloop bench study``'s workers)."""
    log = open(log_path, "ab")  # noqa: SIM115 (the child keeps it)
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue, "--pool", "solo",
        "--hostname", f"{queue}-{secrets.token_hex(3)}@localhost", "--loglevel", loglevel,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(Exception):
    """A stop signal arrived (Ctrl-C's SIGINT, SIGTERM, SIGHUP): ``up`` stops everything it
    started and exits with status 0."""


def _stop_on_signals() -> None:
    def stop(signum: int, _frame: object) -> None:
        # Once: a further signal (Ctrl-C pressed again) must interrupt neither the stop nor the
        # exit. Ignored, not left to Python's SIGINT handler: a KeyboardInterrupt in the stop
        # would skip the rest of it (click's "Aborted!", status 1), and at exit Python puts
        # the default action back, so a late SIGINT would end the process by the signal (-2).
        for name in STOP_SIGNALS:
            signal.signal(name, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    for name in STOP_SIGNALS:
        signal.signal(name, stop)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _sweeper(app, stop: threading.Event, every_s: float = 1.0) -> None:
    from service.rendering import run_step
    from service.sweep import sweep

    while not stop.wait(every_s):
        try:
            with app.app_context():
                run_step(sweep, app=app)
        except Exception:  # keep sweeping; the next pass retries
            app.logger.exception("sweep failed")


def _streams(settings, host: str, port: int):
    """The stream process's service on a thread, on ``port`` (any free port when taken)."""
    from service.push.server import Background

    try:
        return Background(settings, host, port)
    except OSError as error:
        click.echo(f"port {port} for the live streams: {error}; using a free one")
        return Background(settings, host, 0)


def demo_campaign(app, rounds_budget: int, quorum: int) -> str:
    """The campaign to show: the newest unfinished one, or a new cppn demo campaign."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.lifecycle import start
    from service.models import Campaign
    from service.rendering import run_step
    from service.schemas import CampaignCreate
    from service.transitions import audit

    with app.app_context(), session_scope(app) as session:
        existing = session.scalar(
            select(Campaign)
            .where(Campaign.status.not_in(CAMPAIGN_ENDED))
            .order_by(Campaign.created_at.desc())
            .limit(1)
        )
        if existing is not None:
            return existing.id
        body = CampaignCreate(name="demo", prompt=DEMO_PROMPT, generator="cppn", m=8, k=None,
                              annotators_per_round=quorum, rounds=rounds_budget, width=128,
                              height=128, round_deadline_s=120, recruit_cap=50,
                              # Every annotator may rank every round (simulated ones must).
                              tasks_per_annotator=rounds_budget)  # fmt: skip
        campaign = Campaign(name=body.name, prompt=body.prompt, settings=body.settings())
        session.add(campaign)
        session.flush()
        audit(session, "campaign_created", campaign.id, actor="rankloop up")
        session.commit()
        run_step(start, campaign.id, "rankloop up", session=session, app=app)
        return campaign.id


def _new_annotators(app, campaign_id: str, count: int) -> list[str]:
    from service.auth import hash_token, new_token
    from service.db import session_scope
    from service.models import Annotator

    tokens = [new_token() for _ in range(count)]
    with app.app_context(), session_scope(app) as session:
        session.add_all(
            Annotator(campaign_id=campaign_id, token_hash=hash_token(t)) for t in tokens
        )
        session.commit()
    return tokens


def _progress(app, campaign_id: str) -> dict[str, Any]:
    from service.closing import winner_image
    from service.db import session_scope
    from service.models import Campaign
    from service.verdicts import campaign_verdict

    with app.app_context(), session_scope(app) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        rows = []
        for r in campaign.rounds:
            winner = winner_image(r)
            rows.append({"number": r.number, "status": r.status, "kind": r.kind,
                         "agreement": r.consensus.agreement if r.consensus else None,
                         "n_rankings": r.consensus.n_rankings if r.consensus else None,
                         "winner_key": winner.key if winner else None,
                         "best_key": r.best_key})  # fmt: skip
        verdict = campaign_verdict(session, campaign_id).sentence()
        return {"status": campaign.status, "error": campaign.error, "verdict": verdict,
                "budget": campaign.config.rounds, "rounds": rows}  # fmt: skip


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--var", "var_dir", default="var", show_default=True, help="where data lives")
@click.option(
    "--simulate", default=0, type=int, help="add N simulated annotators (threads over HTTP)"
)
@click.option("--rounds", "rounds_budget", default=None, type=int,
              help="round budget of a new demo campaign [default: 12 with --simulate, else 20]")  # fmt: skip
@click.option("--exit-when-done", is_flag=True, help="exit once the demo campaign has finished")
@click.option("--streams-port", default=None, type=int,
              help="the live streams' port (rankloop streams) [default: --port + 1, else any "
                   "free one]")  # fmt: skip
def up_command(host: str, port: int, var_dir: str, simulate: int, rounds_budget: int | None,
               exit_when_done: bool, streams_port: int | None) -> None:  # fmt: skip
    """Run rankloop on this machine: web app, workers, SQLite, local object store."""
    _stop_on_signals()  # before anything is started: every child is stopped with this process
    var = Path(var_dir).resolve()
    var.mkdir(parents=True, exist_ok=True)
    # Every process started here reads the same settings (rankloop.core.settings): the
    # database, store and broker not set in the environment are the defaults under var/.
    settings = load_settings(overrides={"VAR_DIR": var})
    admin = settings.admin_token or secrets.token_urlsafe(24)
    env = {env_name("var_dir"): str(var), env_name("admin_token"): admin}
    os.environ.update(env)
    from rankloop.commands.web import create_web_app
    from service.cli import upgrade

    upgrade(settings.database_url)
    streams = _streams(settings.model_copy(update={"admin_token": admin}), host,
                       port + 1 if streams_port is None else streams_port)  # fmt: skip
    # Behind an https proxy the links given out name the public address (RANKLOOP_BASE_URL),
    # and the proxy routes the stream paths to the streams' port (docs/guides/crowd-study.md):
    # the pages open them on the public address (RANKLOOP_STREAM_URL, if set elsewhere).
    local = f"http://{host}:{streams.port}"
    stream_url = settings.stream_url or (None if settings.base_url else local)
    app = create_web_app({"BASE_URL": settings.base_url or f"http://{host}:{port}",
                          "STREAM_URL": stream_url})  # fmt: skip
    from service.tasks import warm_up_consensus

    threading.Thread(target=warm_up_consensus, name="warm-up", daemon=True).start()
    quorum = max(1, min(simulate, 3)) if simulate else 1
    campaign_id = demo_campaign(app, rounds_budget or (12 if simulate else 20), quorum)

    processes: list[subprocess.Popen] = []
    stop = threading.Event()
    server = None
    try:
        processes.append(celery_worker("gpu_worker.celery_app", "gpu", env, var / "worker-gpu.log"))
        processes.append(celery_worker("service.worker", "coord", env, var / "worker-coord.log"))
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        server = make_server(host, port, app, threaded=True)
        threading.Thread(target=server.serve_forever, name="web", daemon=True).start()
        threading.Thread(target=_sweeper, args=(app, stop), name="sweeper", daemon=True).start()
        code = _serve(app, campaign_id, admin, host, port, var, simulate, exit_when_done, stop,
                      processes)  # fmt: skip
    except Stopped as reason:
        click.echo(f"stopping ({reason})")
        code = 0
    finally:
        stop.set()
        if server is not None:
            server.shutdown()
        streams.stop()
        _stop(processes)
    sys.exit(code)


def _serve(app, campaign_id: str, admin: str, host: str, port: int, var: Path, simulate: int,
           exit_when_done: bool, stop: threading.Event, processes) -> int:  # fmt: skip
    """Print the links, start the simulated annotators, and watch until done."""
    base = f"http://{host}:{port}"
    (link_token,) = _new_annotators(app, campaign_id, 1)
    click.echo(f"rankloop is up at {base}  (data in {var}, worker logs in {var}/worker-*.log)")
    # The key rides in the fragment: the page moves it to sessionStorage and out of the address
    # bar, and a fragment is never sent to the server (nor written to its logs).
    dashboard = f"{base}/dashboard#key={quote(admin, safe='')}"
    click.echo(f"  owner dashboard : {dashboard}   (owner key: {admin})")
    click.echo(f"  annotator link  : {base}/task#token={link_token}")
    click.echo(f"  campaign        : {campaign_id}   API: {base}/api/openapi.json")
    streams = settings_of(app).stream_url or "the stream paths on the public address (proxy)"
    click.echo(f"  live streams    : {streams}   (rankloop streams, in this process)")
    workers = []
    if simulate:
        from rankloop.simulation.http_annotators import start_simulated

        workers = start_simulated(
            base, _new_annotators(app, campaign_id, simulate), stop_event=stop
        )
        click.echo(f"  {simulate} simulated annotators prefer warm, colourful images")
    return _watch(app, campaign_id, exit_when_done, workers, processes)


def _watch(app, campaign_id: str, exit_when_done: bool, workers: list, processes) -> int:
    from rankloop.simulation.http_annotators import preference_cost

    store = app.extensions["rankloop_store"]
    reported: set[int] = set()
    best_costs: list[float] = []
    last_winner_cost = float("nan")
    started = time.monotonic()

    def cost(key: str | None) -> float:
        return preference_cost(store.get(key)) if key else float("nan")

    while True:
        time.sleep(0.5)
        if any(p.poll() is not None for p in processes):
            click.echo("a worker process exited; see var/worker-*.log", err=True)
            return 1
        progress = _progress(app, campaign_id)
        for row in progress["rounds"]:
            if row["status"] == RoundStatus.CLOSED and row["number"] not in reported:
                reported.add(row["number"])
                if row["kind"] == VERDICT_ROUND:  # the crowd's verdict: no optimizer step
                    click.echo(f"verdict   rankings {row['n_rankings']}  {progress['verdict']}  "
                               f"({time.monotonic() - started:.0f}s)")  # fmt: skip
                    continue
                # "best" is the optimizer's point this round was built around (rendered clean);
                # "winner" is the image the crowd put first in this round.
                best_costs.append(cost(row["best_key"]))
                last_winner_cost = cost(row["winner_key"])
                agreement = row["agreement"]
                click.echo(f"round {row['number'] + 1:>3}/{progress['budget']} {row['kind'] or '':<11} "
                           f"rankings {row['n_rankings']}  agreement "
                           f"{'n/a' if agreement is None else f'{agreement:.2f}'}  "
                           f"best cost {best_costs[-1]:+.3f}  winner cost {last_winner_cost:+.3f}  "
                           f"({time.monotonic() - started:.0f}s)")  # fmt: skip
        if progress["status"] in CAMPAIGN_ENDED and exit_when_done:
            submitted = sum(w.submitted for w in workers)
            first, last = (best_costs[0], best_costs[-1]) if best_costs else (float("nan"),) * 2
            click.echo(f"campaign {progress['status']}: {len(best_costs)} rounds, {submitted} simulated "
                       f"rankings, best image cost {first:+.3f} -> {last:+.3f}, last round's winner "
                       f"{last_winner_cost:+.3f} (lower = closer to what the crowd prefers), "
                       f"{time.monotonic() - started:.0f}s; verdict: {progress['verdict']}")  # fmt: skip
            if progress["error"]:
                click.echo(f"error: {progress['error']}", err=True)
            return 0 if progress["status"] == CampaignStatus.FINISHED else 1
