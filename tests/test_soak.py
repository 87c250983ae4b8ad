"""A compact soak of the production stack: gunicorn (``rankloop serve``, 2 processes), two render
workers, a bookkeeping worker and beat on PostgreSQL, Redis and SeaweedFS, with several
campaigns and a crowd of simulated annotators over HTTP. Every 201 is accounted for in the
database and in the export, and every process's memory is sampled (reported, and checked
loosely: no process ends above twice its size once warm).

A scaled-down version of the issue's soak (10 campaigns, 200 annotators, a few minutes), sized
to stay under 90 s on two shared cores; the same test at the issue's size:
``RANKLOOP_SOAK_CAMPAIGNS=10 RANKLOOP_SOAK_ANNOTATORS=200 RANKLOOP_SOAK_BOUND_S=600``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from service import db
from service.models import Ranking, Round
from tests.fixtures.coordinator import _truncate, make_app
from tests.fixtures.private_services import report_recovery
from tests.fixtures.web_stack import OWNER, WebStack

CAMPAIGNS = int(os.environ.get("RANKLOOP_SOAK_CAMPAIGNS", 4))
ANNOTATORS = int(os.environ.get("RANKLOOP_SOAK_ANNOTATORS", 40))  # in all, spread evenly
# A bound against a hang, not a speed target: a loaded CI machine may take several times longer.
BOUND_S = float(os.environ.get("RANKLOOP_SOAK_BOUND_S", 300))
ROUNDS, QUORUM = 3, 3


class Crowd:
    """Annotators in threads, each on its own HTTP session: fetch a task, rank it in a random
    order, again until its campaign ends; every 201's ranking id is kept."""

    def __init__(self, base: str, tokens: dict[str, list[str]]):
        self.base, self.tokens = base, tokens
        self.accepted: dict[int, str] = {}  # ranking id -> campaign
        self.statuses: dict[int, int] = {}
        self.lock, self.stop = threading.Lock(), threading.Event()

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def annotator(self, cid: str, token: str, seed: int) -> None:
        rng, http = random.Random(seed), requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        while not self.stop.is_set():
            try:
                task = http.get(f"{self.base}/api/tasks/next", headers=headers, timeout=30)
            except requests.RequestException:
                self.count(-1)
                time.sleep(0.5)
                continue
            self.count(task.status_code)
            if task.status_code != 200:
                pause = float(task.headers.get("Retry-After", 1.0 + rng.random()))
                self.stop.wait(min(pause, 2.0))
                continue
            order = [image["id"] for image in task.json()["images"]]
            rng.shuffle(order)
            url = f"{self.base}/api/tasks/{task.json()['task_id']}/ranking"
            sent = http.post(url, json={"order": order}, headers=headers, timeout=30)
            self.count(sent.status_code)
            if sent.status_code == 201:
                with self.lock:
                    self.accepted[sent.json()["ranking_id"]] = cid

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self.annotator, args=(cid, token, n), daemon=True)
            for cid, tokens in self.tokens.items()
            for n, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        return threads


class Memory:
    """RSS of every process of the stack (each command's process and its children), sampled
    in a thread every second: ``{name: [MiB, ...]}``."""

    def __init__(self, processes: dict[str, int]):
        self.processes = processes
        self.samples: dict[str, list[float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        for name, pid in self.processes.items():
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for index, process in enumerate(tree):
                label = name if index == 0 else f"{name}/child{index}"
                try:
                    rss = process.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.samples.setdefault(label, []).append(round(rss, 1))

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.sample()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_every_201_is_stored_and_exported_and_memory_stays_flat(
    postgres_url, redis_url, redis_prefix, seaweed, tmp_path: Path
):
    # The tables (the session's database), made and emptied as the other tests do.
    setup = make_app(tmp_path, postgres_url)
    _truncate(setup)
    db.get_engine(setup).dispose()
    bucket = seaweed.make_bucket()
    extra_env = {"RANKLOOP_LOG_FORMAT": "json", **seaweed.env(bucket)}
    with WebStack(tmp_path, postgres_url, redis_url, f"{redis_prefix}soak:", extra_env) as stack:
        base = stack.base
        crowd = None
        memory = None
        try:
            processes = {"web": stack.web.pid, "beat": stack.beat.pid}
            processes |= {f"worker{n}": w.process.pid for n, w in enumerate(stack.workers)}
            memory = Memory(processes)
            memory.sample()
            memory.thread.start()

            tokens = stack.make_campaigns(
                "soak", CAMPAIGNS, QUORUM, ROUNDS, ANNOTATORS // CAMPAIGNS
            )

            http = requests.Session()
            started = time.monotonic()
            crowd = Crowd(base, tokens)
            threads = crowd.start()
            warm: dict[str, float] = {}
            while True:
                states = {
                    cid: http.get(f"{base}/api/campaigns/{cid}", headers=OWNER, timeout=30).json()
                    for cid in tokens
                }
                if not warm and crowd.accepted:  # once warm: every process has done some work
                    memory.sample()
                    warm = {name: values[-1] for name, values in memory.samples.items()}
                if all(state["status"] == "finished" for state in states.values()):
                    break
                assert not any(state["status"] == "failed" for state in states.values()), states
                assert time.monotonic() - started < BOUND_S, (
                    {cid: (s["status"], s.get("current_round")) for cid, s in states.items()},
                    crowd.statuses,
                )
                time.sleep(1.0)
            elapsed = time.monotonic() - started
            crowd.stop.set()
            for thread in threads:
                thread.join(timeout=35)
            memory.stop.set()
            memory.thread.join()

            # Every 201 is in the database and in the export, and nothing else is.
            with setup.app_context(), db.session_scope(setup) as session:
                stored = dict(
                    session.execute(
                        select(Ranking.id, Round.campaign_id).join(
                            Round, Round.id == Ranking.round_id
                        )
                    ).all()
                )
            exported: dict[int, str] = {}
            for cid in tokens:
                dump = http.get(f"{base}/api/campaigns/{cid}/export?format=jsonl",
                                headers=OWNER, timeout=60)  # fmt: skip
                assert dump.status_code == 200, dump.text[:500]
                for line in dump.text.splitlines():
                    record = json.loads(line)
                    exported[record["ranking_id"]] = record["campaign_id"]

            # /metrics sums both gunicorn processes' response counts (PROMETHEUS_MULTIPROC_DIR,
            # set by rankloop/commands/gunicorn_conf.py): 20 404s however they were spread.
            for _ in range(20):
                assert requests.get(f"{base}/api/campaigns/nope", headers=OWNER).status_code == 404
            scraped = requests.get(f"{base}/metrics", timeout=30).text
            not_found = [
                s.value
                for family in text_string_to_metric_families(scraped)
                for s in family.samples
                if s.name == "rankloop_http_responses_total"
                and s.labels == {"endpoint": "/api/campaigns/<campaign_id>", "status": "404"}
            ]
            web_lines = stack.web_log.read_text().splitlines()
            # Each worker's lines about the jobs it ran ("Task ... received") are JSON objects.
            received = [
                [line for line in worker.log_text().splitlines() if "] received" in line]
                for worker in stack.workers
            ]
        finally:
            if crowd is not None:
                crowd.stop.set()
            if memory is not None:
                memory.stop.set()
    assert crowd.accepted == stored == exported
    assert len(stored) == CAMPAIGNS * ROUNDS * QUORUM  # no round closed over its quorum
    assert not_found == [20.0]
    assert all(received), received  # RANKLOOP_LOG_FORMAT=json: every worker ran jobs
    assert all(json.loads(line)["level"] == "INFO" for lines in received for line in lines)
    booted = [line for line in web_lines if "Booting worker" in line]  # gunicorn's own lines
    assert len(booted) == 2 and all(json.loads(line)["level"] == "INFO" for line in booted)
    access = [line for line in web_lines if "GET /api/campaigns/nope" in line]
    assert access and all(json.loads(line)["logger"] == "gunicorn.access" for line in access)
    assert 500 not in crowd.statuses
    summary = {
        name: {"warm_mib": warm.get(name, values[0]), "peak_mib": max(values),
               "last_mib": values[-1]}
        for name, values in memory.samples.items()
    }  # fmt: skip
    report_recovery(
        "soak",
        {"campaigns": CAMPAIGNS, "annotators": ANNOTATORS, "rankings": len(stored),
         "seconds": round(elapsed, 1), "statuses": crowd.statuses, "rss": summary},
    )  # fmt: skip
    grown = {name: s for name, s in summary.items() if s["last_mib"] > 2 * s["warm_mib"]}
    assert not grown, grown
