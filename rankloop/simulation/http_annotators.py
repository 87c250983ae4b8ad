"""Simulated annotators that use the real HTTP API, for ``rankloop up --simulate N``.

Each is a thread that does what a person on the task page does: fetch the next task, look at
the images, rank them, submit, repeat. What they "prefer" is a simple property of the image
itself: colourful images whose average colour is close to a warm target (a sunset orange).
:func:`preference_cost` scores an image (lower = better); the noise of a human judge comes from
:mod:`rankloop.simulation.crowd` (Plackett–Luce at a temperature). The attention check needs no special
case: the degraded copy is grey and washed out, so it scores badly on its own.

Only the standard library talks HTTP here, so the embedded default needs no extra package.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from rankloop.simulation.crowd import Crowd, SimulatedAnnotator

log = logging.getLogger(__name__)

TARGET_RGB = np.array([1.0, 0.45, 0.1])  # warm orange


def preference_cost(png_or_webp: bytes) -> float:
    """The hidden preference: distance of the mean colour to the target, minus colourfulness
    (Hasler & Süsstrunk 2003), both on a 0..1 scale. Lower is better."""
    from PIL import Image

    with Image.open(io.BytesIO(png_or_webp)) as image:
        pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=float) / 255.0
    mean = pixels.reshape(-1, 3).mean(axis=0)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    return float(np.linalg.norm(mean - TARGET_RGB) - 0.5 * colourfulness)


def obvious_outliers(costs: list[float], margin: float = 0.05) -> list[int]:
    """The images a person spots at a glance as far worse than the rest (the attention check's
    degraded copy). They are set aside, so the noise of judging the others is relative to how
    the others differ, as for a person comparing near-identical images side by side."""
    values = np.asarray(costs, dtype=float)
    centre = float(np.median(values))
    spread = float(np.median(np.abs(values - centre))) or 1e-9
    return [i for i, v in enumerate(values) if v - centre > max(8 * spread, margin)]


class Http:
    """A tiny JSON client over urllib (one per thread)."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def absolute(self, url: str) -> str:
        return url if url.startswith(("http://", "https://")) else self.base_url + url

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(
            self.absolute(url), data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw) if raw else None
            except ValueError:
                return error.code, None

    def fetch(self, url: str) -> bytes:
        with urllib.request.urlopen(self.absolute(url), timeout=self.timeout_s) as response:
            return response.read()


class SimulatedWorker(threading.Thread):
    """One simulated annotator thread. ``submitted`` counts its stored rankings."""

    def __init__(self, base_url: str, token: str, judge: SimulatedAnnotator, seed: int = 0,
                 stop_event: threading.Event | None = None, poll_s: float = 0.25) -> None:  # fmt: skip
        super().__init__(name=f"simulated-{judge.id}", daemon=True)
        self.base_url, self.token, self.judge, self.seed = base_url, token, judge, seed
        self.stop_event = stop_event or threading.Event()
        self.poll_s = poll_s
        self.submitted = 0
        self.errors: list[str] = []

    def run(self) -> None:
        http = Http(self.base_url, self.token)
        crowd = Crowd((self.judge,), seed=self.seed)
        while not self.stop_event.is_set():
            try:
                if not self.step(http, crowd):
                    self.stop_event.wait(self.poll_s)
            except (OSError, ValueError) as error:  # server restarting, connection reset
                self.errors.append(str(error))
                self.stop_event.wait(1.0)

    def step(self, http: Http, crowd: Crowd) -> bool:
        """Do one task; False when there was none."""
        status, task = http.request("GET", "/api/tasks/next")
        if status != 200:
            return False
        images = task["images"]
        costs = [
            preference_cost(http.fetch(image["thumb_url"] or image["url"])) for image in images
        ]
        answers = crowd.rank(
            costs,
            round_number=int(task["round"]) * 100003 + self.submitted,
            attention=obvious_outliers(costs),
        )
        if not answers:  # dropped out of this one
            return True
        order = [
            images[i]["id"] if isinstance(i, int) else [images[j]["id"] for j in i]
            for i in answers[0][1]
        ]
        if not task.get("allow_ties"):
            order = [
                i
                for element in order
                for i in (element if isinstance(element, list) else [element])
            ]
        if task.get("k"):
            order = order[: int(task["k"])]
        status, body = http.request(
            "POST", f"/api/tasks/{task['task_id']}/ranking", {"order": order}
        )
        if status == 201:
            self.submitted += 1
        elif status >= 400:
            self.errors.append(f"{status}: {body}")
        return True


def start_simulated(base_url: str, tokens: list[str], seed: int = 0, temperature: float = 0.3,
                    stop_event: threading.Event | None = None) -> list[SimulatedWorker]:  # fmt: skip
    """Start one honest simulated annotator per token (they share ``stop_event``)."""
    stop_event = stop_event or threading.Event()
    workers = [
        SimulatedWorker(
            base_url,
            token,
            SimulatedAnnotator(id=f"sim-{n}", temperature=temperature),
            seed=seed + n,
            stop_event=stop_event,
        )
        for n, token in enumerate(tokens)
    ]
    for worker in workers:
        worker.start()
    return workers
