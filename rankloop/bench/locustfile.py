"""Load for ``rankloop bench api``: annotators fetching tasks and submitting rankings.

Run by the benchmark as a separate process (``locust --headless``). Tokens come from the file
named by ``RANKLOOP_BENCH_TOKENS`` (one per line); every simulated user takes the next unused
token, ranks every task it is given, and moves to a fresh token when it gets a 204 (it has
ranked every open round). ``RANKLOOP_BENCH_BARE=1`` hits the bare endpoint instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from locust import FastHttpUser, constant, events, task

_lock = threading.Lock()
_tokens: Iterator[str] = iter(())
if os.environ.get("RANKLOOP_BENCH_TOKENS"):
    with open(os.environ["RANKLOOP_BENCH_TOKENS"]) as handle:
        _tokens = iter([line.strip() for line in handle if line.strip()])
_acknowledged: list[int] = []  # ranking ids answered 201, written out when locust quits


@events.quitting.add_listener
def _write_acknowledged(**_kwargs) -> None:
    path = os.environ.get("RANKLOOP_BENCH_ACKS")
    if path:
        with open(path, "w") as handle:
            handle.write("\n".join(map(str, _acknowledged)))


def next_token() -> str | None:
    with _lock:
        return next(_tokens, None)


class Annotator(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.token = next_token()

    @task
    def rank(self) -> None:
        if os.environ.get("RANKLOOP_BENCH_BARE"):
            self.client.post("/bare", json={"order": ["a", "b"]}, name="bare POST")
            return
        if self.token is None:
            self.stop()
            return
        headers = {"Authorization": f"Bearer {self.token}"}
        with self.client.get(
            "/api/tasks/next", headers=headers, name="GET next", catch_response=True
        ) as response:
            if response.status_code == 204:
                response.success()
                self.token = next_token()
                return
            if response.status_code != 200:
                response.failure(f"next: {response.status_code}")
                return
            body = response.json()
        order = [image["id"] for image in body["images"]]
        with self.client.post(
            f"/api/tasks/{body['task_id']}/ranking",
            json={"order": order},
            headers=headers,
            name="POST ranking",
            catch_response=True,
        ) as post:
            if post.status_code == 201:
                post.success()
                _acknowledged.append(int(post.json()["ranking_id"]))
            else:
                post.failure(f"ranking: {post.status_code} {post.text[:200]}")
