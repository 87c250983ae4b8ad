"""``rankloop bench study``: a crowd on one study beside the same crowd on separate campaigns.

The whole service runs on this machine (:class:`rankloop.bench.stack.FullStack`): gunicorn,
Celery render workers (``cppn`` renders on the CPU), the bookkeeping worker and beat, on
PostgreSQL and Redis. A study of ``--prompts`` prompts (a campaign each, ``--rounds`` rounds of
``--m`` images, top-``--k``, ``--quorum``) and ``--workers`` simulated workers over HTTP who
join through the study's one link (:mod:`rankloop.bench.study_crowd`: human-like timing, 5 % of
tasks abandoned, 10 % of workers leaving mid-study, the waiting stream opened between tasks).
Beside it the baseline, today's way: the same crowd on one campaign per prompt, one link each,
workers spread evenly over the links.

The crowd joins before the start (the study is published a moment early), every worker waits
with their stream open, and the server's memory is read with those idle streams held
(the resident memory of the processes serving streams, before and after, over the streams
held). Then the study starts, and the run lasts until every campaign has ended.

Printed and saved (JSON, and a PNG beside it): idle share, rankings/s, round open -> closed
p50/p90, notify latency (round open -> a waiting worker told) p50/p99, streams held and memory
per idle stream, the rankings spent, and every 201 looked up in the database and the export
(:mod:`rankloop.bench.study_measures` says how each is measured). ``--stack inprocess`` runs
the lite version instead (:mod:`rankloop.bench.study_lite`: no gunicorn, broker or streams).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from rankloop.bench.api import services_options
from rankloop.bench.load_drivers import ADMIN
from rankloop.bench.report import format_table, save_results
from rankloop.bench.stack import FullStack, rss_bytes
from rankloop.bench.study_crowd import Crowd, Http
from rankloop.bench.study_measures import measure, read_rounds
from rankloop.core.campaign_settings import MIN_ROUND_DEADLINE_S, CampaignFields
from rankloop.core.contracts import MIN_LEASE_S, CampaignStatus, default_lease_s
from rankloop.simulation.quorum import QuorumRule

SIZE = 128  # pixels a side: the cppn renders stay a small share of the shared cores
ROUND_DEADLINE_S: float = CampaignFields.model_fields["round_deadline_s"].get_default()
ARRIVE_S = 300.0  # the whole crowd joins within this (bounded waits, never sleeps)

COLUMNS = ["mode", "idle_share", "rankings_per_s", "round_p50_s", "round_p90_s", "notify_p50_s",
           "notify_p99_s", "streams_held", "kb_per_idle_stream", "rankings_per_round",
           "responses_201", "rankings_stored", "rankings_lost", "missing_from_export"]  # fmt: skip


def quorum_settings(text: str) -> dict[str, Any]:
    """``fixed:3``, ``adaptive:2-5`` (or a bare number, fixed) as campaign settings."""
    rule = QuorumRule.parse(f"fixed:{text}" if text.strip().isdigit() else text)
    if rule.kind == "fixed":
        return {"quorum": "fixed", "annotators_per_round": rule.high}
    return {"quorum": "adaptive", "min_annotators_per_round": rule.low,
            "annotators_per_round": rule.high, "settle_confidence": rule.confidence}  # fmt: skip


def _create(http: Http, mode: str, options: dict[str, Any]) -> tuple[str | None, dict[str, list[str]], list[str]]:  # fmt: skip
    """The study (or the campaigns), not started: (study id, campaigns per link, links)."""
    # A person's timeouts shrink with their time per ranking (--time-scale), within the limits.
    scale, m, k = options["time_scale"], options["m"], options["k"]
    lease_s = max(MIN_LEASE_S, default_lease_s(m, k, SIZE, SIZE) * scale)
    deadline_s = max(MIN_ROUND_DEADLINE_S, ROUND_DEADLINE_S * scale)
    settings = {"generator": "cppn", "m": m, "k": k, "width": SIZE, "height": SIZE,
                "rounds": options["rounds"], "tasks_per_annotator": options["rounds"],
                "lease_s": lease_s, "round_deadline_s": deadline_s,
                **options["quorum_settings"]}  # fmt: skip
    prompts = [f"prompt {n}" for n in range(options["prompts"])]
    workers = options["workers"]
    if mode == "study":
        body = {"name": "bench", "prompts": prompts, "settings": settings, "recruit": True,
                "recruit_cap": workers, "tasks_per_worker": 10_000, "start": False}  # fmt: skip
        status, study, _ = http.call("POST", "/api/studies", ADMIN, body)
        if status != 201:
            raise click.ClickException(f"the study was not created ({status}): {study}")
        link = f"/join/study/{study['id']}"
        return study["id"], {link: [c["id"] for c in study["campaigns"]]}, [link] * workers
    per_link = {}
    for prompt in prompts:
        body = {**settings, "prompt": prompt, "recruit": True, "recruit_cap": workers,
                "tasks_per_annotator": 10_000, "start": False}  # fmt: skip
        status, campaign, _ = http.call("POST", "/api/campaigns", ADMIN, body)
        if status != 201:
            raise click.ClickException(f"a campaign was not created ({status}): {campaign}")
        per_link[f"/join/{campaign['id']}"] = [campaign["id"]]
    links = list(per_link)
    return None, per_link, [links[n % len(links)] for n in range(workers)]


def _unfinished(db_url: str, ids: list[str]) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM campaigns WHERE id = ANY(:ids) AND status IN (:d, :r)"),
                {"ids": ids, "d": CampaignStatus.DRAFT, "r": CampaignStatus.RUNNING},
            ).scalar_one()
    finally:
        engine.dispose()


def _exported(http: Http, study_id: str | None, ids: list[str]) -> set[int]:
    """The ranking ids in the export (the study's, else each campaign's), JSON lines."""
    paths = ([f"/api/studies/{study_id}/export?format=jsonl"] if study_id else
             [f"/api/campaigns/{cid}/export?format=jsonl" for cid in ids])  # fmt: skip
    found: set[int] = set()
    for path in paths:
        http.call("GET", "/healthz")  # (a fresh answer per export: the body is read raw below)
        connection = http.connection
        assert connection is not None
        connection.request("GET", path, headers={"Authorization": f"Bearer {ADMIN}"})
        response = connection.getresponse()
        for line in response.read().splitlines():
            if line.strip():
                found.add(int(json.loads(line)["ranking_id"]))
    return found


def _idle_streams(stack: FullStack, crowd: Crowd) -> dict[str, Any]:
    """The server's memory with every waiting worker's stream open, before the start."""
    deadline = time.monotonic() + ARRIVE_S
    for worker in crowd.workers:
        worker.arrived.wait(max(0.0, deadline - time.monotonic()))
    pids = stack.server_pids()
    before = rss_bytes(pids)
    crowd.go_streams.set()
    deadline = time.monotonic() + 60
    for worker in crowd.workers:
        worker.stream_attempted.wait(max(0.0, deadline - time.monotonic()))
    time.sleep(1.0)  # (the last streams' first events are written)
    after = rss_bytes(pids)
    held = crowd.tally.streams_open
    return {
        "streams_held": held,
        "streams_refused": crowd.tally.streams_refused,
        "server_rss_mb": round(after / 2**20, 1),
        "kb_per_idle_stream": round((after - before) / held / 1024, 1) if held else None,
        "stream_urls": sorted(crowd.tally.stream_urls),
    }


def run_full(stack: FullStack, mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """One run (``study`` or ``campaigns``) on the stack; its row of the table."""
    http = Http("127.0.0.1", stack.port)
    study_id, per_link, links = _create(http, mode, options)
    ids = [cid for cids in per_link.values() for cid in cids]
    crowd = Crowd(stack.base, links, options)
    crowd.start()
    try:
        streams = _idle_streams(stack, crowd)
        click.echo(f"{mode}: {len(links)} workers waiting, {streams['streams_held']} streams "
                   f"held, {streams['streams_refused']} refused; starting", err=True)  # fmt: skip
        started = time.time()
        for path in ([f"/api/studies/{study_id}/start"] if study_id else
                     [f"/api/campaigns/{cid}/start" for cid in ids]):  # fmt: skip
            status, answer, _ = http.call("POST", path, ADMIN)
            if status != 200:
                raise click.ClickException(f"{path} answered {status}: {answer}")
        limit = time.monotonic() + options["limit_s"]
        while time.monotonic() < limit and crowd.alive() and _unfinished(stack.db_url, ids):
            time.sleep(1.0)
        end = time.time()
        click.echo(f"{mode}: ended after {end - started:.0f} s", err=True)
    finally:
        crowd.finish()
    db = read_rounds(stack.db_url, ids, end)
    row: dict[str, Any] = {"mode": mode, **measure(crowd.workers, db, per_link, started, end)}
    exported = _exported(http, study_id, ids)
    acked = {i for w in crowd.workers for i in w.acked}
    http.close()
    row.update(streams)
    row["rankings_per_s"] = row["responses_201"] / (end - started)
    row["missing_from_export"] = len(acked - exported)
    row["rounds"] = len(db["rounds"])
    row["campaigns_unfinished"] = _unfinished(stack.db_url, ids)
    row["streams_max"] = crowd.tally.streams_max
    row["fetch_again_409"] = crowd.tally.refused_409
    row["elapsed_s"] = end - started
    row["timeline"] = [round(t - started, 3) for t in sorted(db["ranking_times"])]
    return row


@click.command("study")
@click.option("--stack", "stack_kind", type=click.Choice(["full", "inprocess"]), default="full",
              show_default=True, help="full: gunicorn, Celery workers and beat, PostgreSQL and "
              "Redis; inprocess: the lite version (threads in this process)")  # fmt: skip
@click.option("--prompts", default=200, show_default=True, help="prompts (one campaign each)")
@click.option("--rounds", default=4, show_default=True, help="rounds per prompt")
@click.option("--workers", default=300, show_default=True, help="simulated workers")
@click.option("--m", "m", default=8, show_default=True, help="images per round")
@click.option("--k", "k", default=3, show_default=True, help="top-k ranked per task")
@click.option("--quorum", default="fixed:3", show_default=True,
              help="fixed:N or adaptive:LOW-HIGH[@CONFIDENCE] (rankings per round)")  # fmt: skip
@click.option("--time-scale", default=0.05, show_default=True,
              help="a person's time per ranking (median 20 s) times this")  # fmt: skip
@click.option("--abandon", default=0.05, show_default=True, help="share of tasks abandoned")
@click.option("--leave", default=0.10, show_default=True, help="share of workers who leave")
@click.option("--limit-s", default=600.0, show_default=True, help="each run stops by then")
@click.option("--web-workers", default=2, show_default=True, help="gunicorn processes (full)")
@click.option("--render-workers", default=2, show_default=True,
              help="Celery render workers (full)")  # fmt: skip
@click.option("--render-s", default=1.0, show_default=True,
              help="seconds a render takes (inprocess: played, no worker)")  # fmt: skip
@click.option("--poll-s", default=0.25, show_default=True,
              help="a waiting worker asks again (inprocess; full polls as the page does)")  # fmt: skip
@click.option("--seed", default=0, show_default=True)
@click.option("--set", "setting", multiple=True, metavar="NAME=VALUE",
              help="a RANKLOOP_* setting for every process of the full stack, e.g. "
              "render_slots_per_owner=0 (repeatable)")  # fmt: skip
@services_options
@click.option("--out", default="bench-results/study.json", show_default=True,
              help="the JSON; the PNG goes beside it")  # fmt: skip
def study_command(stack_kind: str, out: str, redis_url: str, web_workers: int,
                  render_workers: int, setting: tuple[str, ...], **options: Any) -> None:  # fmt: skip
    """A crowd routed over one study's prompts beside the same crowd on separate campaigns."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    try:
        options["quorum_settings"] = quorum_settings(options["quorum"])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--quorum") from None
    settings = dict(item.partition("=")[::2] for item in setting)
    if any(not name or not value for name, value in settings.items()):
        raise click.BadParameter("give NAME=VALUE", param_hint="--set")
    if stack_kind == "inprocess":
        from rankloop.bench.study_lite import run_lite

        rows = [run_lite(mode, options) for mode in ("study", "campaigns")]
        click.echo(format_table(rows))
    else:
        stack = FullStack(options["postgres"], redis_url, web_workers, render_workers, settings)
        with stack:
            rows = [run_full(stack, mode, options) for mode in ("study", "campaigns")]
        click.echo(format_table(rows, COLUMNS))
        _summary(rows)
    meta = {**options, "stack": stack_kind, "web_workers": web_workers, "set": settings,
            "render_workers": render_workers, "size": SIZE}  # fmt: skip
    path = save_results(out, "study", rows, **meta)
    click.echo(f"saved {path}")
    if stack_kind == "full":
        from rankloop.bench.study_plot import plot

        click.echo(f"saved {plot(rows, Path(path).with_suffix('.png'))}")


def _summary(rows: list[dict[str, Any]]) -> None:
    study, base = rows
    kb = study["kb_per_idle_stream"]
    click.echo(
        f"idle share {study['idle_share']:.1%} (baseline {base['idle_share']:.1%}; target < 5%); "
        f"notify p99 {study['notify_p99_s']:.3f} s (target < 0.5 s; by a live stream "
        f"{study['notify_stream_p99_s']:.3f} s) with "
        f"{study['streams_held']} idle streams held ({study['streams_refused']} refused); "
        f"memory per idle stream {'n/a' if kb is None else f'{kb:.1f} kB'} (aim < 50 kB); "
        f"rankings lost {study['rankings_lost']} + {base['rankings_lost']} (target 0), "
        f"missing from the export {study['missing_from_export']} + {base['missing_from_export']}; "
        f"rankings spent {study['rankings_stored']} ({study['rankings_per_round']:.2f} a round)"
    )


__all__ = ["quorum_settings", "study_command"]
