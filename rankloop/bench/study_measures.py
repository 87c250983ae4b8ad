"""The figures of ``rankloop bench study`` (full stack), from what the crowd recorded (wall clock)
beside what the database holds (round opened and closed, tasks leased, lapsed and ranked).

Idle: a worker is idle while they wait for a task (from the ask that answered 204 to the task
arriving) and some round of the run had a place for them: open, its leases and rankings short
of the quorum it closed on (an adaptive round's final quorum, read back), and the worker not
yet in it. Any round of the run: in the baseline too (a worker whose one campaign waits for
others is idle while another prompt's round had a place they could have taken). A lease that lapsed unused frees its place again at its end. Idle share = idle time over
time in the study (from the study's start, or the worker's join if later, to their leaving).

Notify latency: for every round that opened while a worker who may take it was waiting, the
time from its opening to the first news that worker had after it: an event on their stream, or
the answer to their next poll (a task, or none when others took the places first).
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from rankloop.bench.study_crowd import Worker

Span = tuple[float, float]


def epoch(value: dt.datetime | None) -> float | None:
    """A naive UTC timestamp of the database as seconds since the epoch (``time.time()``)."""
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


def union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(a: list[Span], b: list[Span]) -> float:
    """The length of the intersection of two sorted, disjoint span lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def read_rounds(db_url: str, campaign_ids: list[str], end: float) -> dict[str, Any]:
    """Per round: campaign, opened, closed, final quorum, and its place spans; per
    (round, annotator): when they were first leased it; annotator id per token hash."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rounds = connection.execute(text(
                "SELECT r.id, r.campaign_id, r.opened_at, r.closed_at, r.n_rankings, "
                "COALESCE(r.quorum, CAST(c.settings ->> 'annotators_per_round' AS integer)) "
                "FROM rounds r JOIN campaigns c ON c.id = r.campaign_id "
                "WHERE r.campaign_id = ANY(:ids)"), {"ids": campaign_ids}).all()  # fmt: skip
            tasks = connection.execute(text(
                "SELECT t.round_id, t.annotator_id, t.created_at, t.expires_at, "
                "k.id IS NOT NULL FROM assignments t JOIN rounds r ON r.id = t.round_id "
                "LEFT JOIN rankings k ON k.assignment_id = t.id "
                "WHERE r.campaign_id = ANY(:ids)"), {"ids": campaign_ids}).all()  # fmt: skip
            annotators: dict[str, str] = {
                h: i for h, i in connection.execute(text("SELECT token_hash, id FROM annotators"))
            }
            rankings = connection.execute(text(
                "SELECT k.id, k.created_at FROM rankings k JOIN rounds r ON r.id = k.round_id "
                "WHERE r.campaign_id = ANY(:ids)"), {"ids": campaign_ids}).all()  # fmt: skip
    finally:
        engine.dispose()
    by_round: dict[int, list[tuple[float, float | None]]] = defaultdict(list)
    leased: dict[tuple[int, str], float] = {}
    for round_id, annotator_id, created, expires, ranked in tasks:
        start = epoch(created) or 0.0
        by_round[round_id].append((start, None if ranked else epoch(expires)))
        key = (round_id, annotator_id)
        leased[key] = min(leased.get(key, start), start)
    table = {}
    for round_id, campaign_id, opened, closed, n_rankings, room in rounds:
        o, c = epoch(opened), epoch(closed)
        spans = [] if o is None else _places(o, c or end, room, by_round[round_id])
        table[round_id] = {"campaign": campaign_id, "opened": o, "closed": c, "spans": spans,
                           "n_rankings": n_rankings}  # fmt: skip
    return {
        "rounds": table,
        "leased": leased,
        "annotators": annotators,
        "stored": {i for i, _ in rankings},
        "ranking_times": [epoch(t) for _, t in rankings],
    }


def _places(opened: float, closed: float, room: int, tasks: list) -> list[Span]:
    """When a round had a free place: its live leases and rankings fewer than ``room``."""
    steps = [(t, +1) for t, _ in tasks] + [(lapsed, -1) for _, lapsed in tasks if lapsed]
    steps.sort()
    held, at, spans = 0, opened, []
    for when, change in steps:
        if held < room:
            spans.append((at, when))
        held, at = held + change, when
    if held < room:
        spans.append((at, closed))
    return union((max(a, opened), min(b, closed)) for a, b in spans)


def measure(workers: list[Worker], db: dict[str, Any], campaigns_of: dict[str, list[str]],
            started: float, end: float) -> dict[str, Any]:  # fmt: skip
    """Idle share, notify latency, round spans and rankings lost (see the module)."""
    from service.auth import hash_token

    rounds, leased = db["rounds"], db["leased"]
    by_campaign: dict[str, list[int]] = defaultdict(list)
    for round_id, row in rounds.items():
        by_campaign[row["campaign"]].append(round_id)
    idle = in_study = 0.0
    latencies: list[float] = []
    by_stream: list[float] = []
    for worker in workers:
        if not worker.token:
            continue
        annotator = db["annotators"].get(hash_token(worker.token))
        mine = [r for cid in campaigns_of[worker.link] for r in by_campaign[cid]]
        begin, leave = max(worker.joined_at, started), min(worker.left_at or end, end)
        in_study += max(0.0, leave - begin)
        waits = union((max(a, begin), min(b, leave)) for a, b in worker.waits)
        free = union(  # any round of the run: where routing could have sent them
            (a, min(b, leased.get((r, annotator), b)))
            for r in rounds
            for a, b in rounds[r]["spans"]
        )
        idle += overlap(waits, free)
        told = sorted(worker.told)
        held = union(worker.streams)
        for r in mine:
            opened = rounds[r]["opened"]
            if opened is None or not any(a <= opened < b for a, b in worker.waits):
                continue
            later = [t for t in told if t >= opened]
            if later:
                latencies.append(later[0] - opened)
                if any(a <= opened < b for a, b in held):
                    by_stream.append(later[0] - opened)
    spans = [row["closed"] - row["opened"] for row in rounds.values()
             if row["opened"] is not None and row["closed"] is not None]  # fmt: skip
    closed_on = [row["n_rankings"] for row in rounds.values() if row["closed"] is not None]
    acked = [i for w in workers for i in w.acked]
    return {
        "idle_share": idle / in_study if in_study else float("nan"),
        "round_p50_s": statistics.median(spans) if spans else float("nan"),
        "round_p90_s": quantile(spans, 0.9),
        "rounds_closed": len(spans),
        # Rankings spent: what the closed rounds closed on (an adaptive quorum's varies).
        "rankings_per_round": statistics.mean(closed_on) if closed_on else float("nan"),
        "notify_p50_s": quantile(latencies, 0.5),
        "notify_p99_s": quantile(latencies, 0.99),
        "notified": len(latencies),
        "notify_stream_p99_s": quantile(by_stream, 0.99),
        "notified_by_stream": len(by_stream),
        "responses_201": len(acked),
        "rankings_stored": len(db["stored"]),
        "rankings_lost": len(set(acked) - db["stored"]),
        "notify_latencies": [round(x, 4) for x in sorted(latencies)],
    }
