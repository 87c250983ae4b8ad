"""``rankloop bench study --stack inprocess``: the lite version of the study benchmark.

The coordinator serves over HTTP from this process (a threaded WSGI server on a PostgreSQL
database the benchmark creates and drops); renders are played in process after ``--render-s``
(the GPU worker's result, as ``rankloop bench api``'s turnaround sends it), and rounds close in
the request that completes their quorum. Simulated workers (threads, real HTTP) join through
the study's one link, or each through one campaign's link (the baseline, today's way: one
campaign per prompt, one link each), and rank with human-like timing: time per ranking
log-normal (median 20 s, sigma 0.6) scaled by ``--time-scale``; 5 % of tasks are abandoned (the
worker leaves, the lease lapses), 10 % of workers leave mid-study (``--abandon``, ``--leave``). Between tasks a worker asks again every ``--poll-s``.

Printed and saved (JSON): the idle share (time a worker had no task while some round of the
study was open with a place they could take, over their time in the study), rankings/s, a
round's open -> closed p50/p90, and every 201 counted against the rankings in the database.
This lite version runs on one machine's threads: it leaves out gunicorn, the broker and the
waiting page's stream, whose figures the full stack adds (:mod:`rankloop.bench.study`).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rankloop.bench.api import create_database, drop_database
from rankloop.bench.load_drivers import ADMIN
from rankloop.bench.study_crowd import MEDIAN_RANKING_S, SIGMA, json_request
from rankloop.bench.turnaround import render_result
from rankloop.core.contracts import CampaignStatus, RoundStatus, TaskStatus


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the join's 302 is read, not followed


_OPENER = urllib.request.build_opener(_NoRedirect)


def _call(base: str, method: str, path: str, token: str | None = None, body: Any = None):
    """(status, JSON body or None, headers) of one request."""
    headers, data = json_request(token, body)
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=60) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None), response.headers
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return error.code, parsed, error.headers


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: int = 0  # 201s seen
    refused: int = 0  # 409 "fetch again"
    in_study_s: float = 0.0
    idle_s: float = 0.0  # no task while a round had a place for them


def _place_for(app: Any, campaign_ids: list[str], token: str) -> bool:
    """Whether some open round of these campaigns has a place this worker could take: its
    rankings and running leases short of its quorum, and this worker never in it."""
    from sqlalchemy import text

    from service.auth import hash_token
    from service.db import session_scope

    query = text(
        """
        SELECT 1 FROM rounds r JOIN campaigns c ON c.id = r.campaign_id
        WHERE c.id = ANY(:ids) AND r.status = :round_open AND c.status = :campaign_running
          AND r.n_rankings + (SELECT count(*) FROM assignments t WHERE t.round_id = r.id
                AND t.status = :task_leased AND t.expires_at > now() AT TIME ZONE 'utc')
              < CAST(c.settings ->> 'annotators_per_round' AS integer)
          AND NOT EXISTS (SELECT 1 FROM assignments t JOIN annotators a ON a.id = t.annotator_id
                WHERE t.round_id = r.id AND a.token_hash = :hash)
        LIMIT 1
        """
    )
    with app.app_context(), session_scope() as session:
        words = {
            "round_open": RoundStatus.OPEN,
            "campaign_running": CampaignStatus.RUNNING,
            "task_leased": TaskStatus.LEASED,
        }
        found = session.execute(query, {"ids": campaign_ids, "hash": hash_token(token), **words})
        return found.first() is not None


def _worker(base, app, token, campaign_ids, tally, stop, options, rng) -> None:
    scale, poll_s = options["time_scale"], options["poll_s"]
    leaves_after = rng.randint(1, 20) if rng.random() < options["leave"] else None
    done, started = 0, time.monotonic()
    while not stop.is_set():
        asked = time.monotonic()
        status, task, _ = _call(base, "GET", "/api/tasks/next", token)
        if status == 409:
            with tally.lock:
                tally.refused += 1
            continue
        if status == 204:
            # Idle while work existed: said by the database, right after the refusal.
            wasted = _place_for(app, campaign_ids, token)
            stop.wait(poll_s)
            if wasted:
                with tally.lock:
                    tally.idle_s += time.monotonic() - asked
            continue
        if status != 200:
            break
        time.sleep(scale * rng.lognormvariate(0.0, SIGMA) * MEDIAN_RANKING_S)
        if rng.random() < options["abandon"]:
            break  # the task is left to lapse
        order = [image["id"] for image in task["images"]][: task["k"] or None]
        sent, _, _ = _call(
            base, "POST", f"/api/tasks/{task['task_id']}/ranking", token, {"order": order}
        )
        if sent == 201:
            done += 1
            with tally.lock:
                tally.created += 1
        if leaves_after is not None and done >= leaves_after:
            break
    with tally.lock:
        tally.in_study_s += time.monotonic() - started


def _renderer(app, m: int, render_s: float, stop: threading.Event) -> None:
    """The GPU workers' part: every round waiting for its render gets it after ``render_s``."""
    from sqlalchemy import select

    from service.db import session_scope
    from service.models import Round, utcnow
    from service.rendering import round_rendered

    while not stop.is_set():
        with app.app_context(), session_scope() as session:
            waiting = session.execute(
                select(Round.campaign_id, Round.number, Round.created_at).where(
                    Round.status == RoundStatus.RENDERING
                )
            ).all()
            for campaign_id, number, created in waiting:
                if (utcnow() - created).total_seconds() >= render_s:
                    round_rendered(session, render_result(campaign_id, number, m))
        stop.wait(0.05)


def run_lite(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    """One run (``study`` or ``campaigns``) in this process; its row of the table."""
    from werkzeug.serving import make_server

    from rankloop.commands.web import create_web_app
    from service import db

    admin = options["postgres"]
    name, url = create_database(admin)
    folder = tempfile.mkdtemp(prefix="rankloop-bench-study-")
    config = {"DATABASE_URL": url, "STORE_URL": f"{folder}/objects", "BROKER_URL": "memory://",
              "ADMIN_TOKEN": ADMIN, "DATABASE_POOL_SIZE": 20, "DATABASE_MAX_OVERFLOW": 40,
              "RATELIMIT_ENABLED": False}  # fmt: skip
    app = create_web_app(config)
    db.create_all(app)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{http.server_port}"
    threading.Thread(target=http.serve_forever, daemon=True).start()
    stop = threading.Event()
    try:
        return _crowd(mode, options, app, base, stop)
    finally:
        stop.set()
        http.shutdown()
        db.get_engine(app).dispose()
        drop_database(admin, name)


def _crowd(mode, options, app, base, stop) -> dict[str, Any]:
    from sqlalchemy import func, select

    from service.db import session_scope
    from service.models import Campaign, Ranking, Round

    settings = {"generator": "cppn", "m": options["m"], "k": options["k"],
                **options["quorum_settings"], "rounds": options["rounds"],
                "tasks_per_annotator": options["rounds"], "lease_s": 10.0}  # fmt: skip
    prompts = [f"prompt {n}" for n in range(options["prompts"])]
    workers = options["workers"]
    if mode == "study":
        body = {"name": "bench", "prompts": prompts, "settings": settings, "recruit": True,
                "recruit_cap": workers, "tasks_per_worker": 10_000, "start": True}  # fmt: skip
        _, study, _ = _call(base, "POST", "/api/studies", ADMIN, body)
        ids = [c["id"] for c in study["campaigns"]]
        links = [f"/join/study/{study['id']}"] * workers
    else:
        ids = []
        for prompt in prompts:
            body = {**settings, "prompt": prompt, "recruit": True, "recruit_cap": workers,
                    "tasks_per_annotator": 10_000, "start": True}  # fmt: skip
            ids.append(_call(base, "POST", "/api/campaigns", ADMIN, body)[1]["id"])
        links = [f"/join/{ids[n % len(ids)]}" for n in range(workers)]
    renderer = threading.Thread(
        target=_renderer, args=(app, options["m"], options["render_s"], stop)
    )
    renderer.start()
    tokens = []
    for n, link in enumerate(links):
        _, _, headers = _call(base, "GET", f"{link}?PROLIFIC_PID=w{n}")
        tokens.append(parse_qs(urlsplit(headers["Location"]).fragment)["token"][0])
    tally, rng = _Tally(), random.Random(options["seed"])
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=_worker,
            args=(base, app, token, ids, tally, stop, options, random.Random(rng.random())),
        )
        for token in tokens
    ]
    for thread in threads:
        thread.start()
    deadline = started + options["limit_s"]
    with app.app_context():
        while time.monotonic() < deadline and any(t.is_alive() for t in threads):
            with session_scope() as session:
                live = session.scalar(
                    select(func.count())
                    .select_from(Campaign)
                    .where(Campaign.id.in_(ids), Campaign.status == CampaignStatus.RUNNING)
                )
            if not live:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        stop.set()
        for thread in (*threads, renderer):
            thread.join()
        with session_scope() as session:
            stored = session.scalar(
                select(func.count())
                .select_from(Ranking)
                .join(Round)
                .where(Round.campaign_id.in_(ids))
            )
            spans = [
                (closed - opened).total_seconds()
                for opened, closed in session.execute(
                    select(Round.opened_at, Round.closed_at).where(
                        Round.campaign_id.in_(ids), Round.closed_at.is_not(None)
                    )
                )
                if opened is not None and closed is not None
            ]
    deciles = statistics.quantiles(spans, n=10) if len(spans) > 1 else [float("nan")] * 9
    return {
        "mode": mode,
        "idle_share": tally.idle_s / tally.in_study_s if tally.in_study_s else float("nan"),
        "rankings_per_s": tally.created / elapsed,
        "round_p50_s": statistics.median(spans) if spans else float("nan"),
        "round_p90_s": deciles[8],
        "rounds_closed": len(spans),
        "responses_201": tally.created,
        "rankings_stored": stored,
        "fetch_again_409": tally.refused,
        "elapsed_s": elapsed,
    }


__all__ = ["run_lite"]
