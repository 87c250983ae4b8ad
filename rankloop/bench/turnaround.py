"""Round turnaround overheads for ``rankloop bench api``, with a real bookkeeping worker: last
ranking in -> next render enqueued, and render done -> round open (see :mod:`rankloop.bench.api`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rankloop.bench.load_drivers import (
    ADMIN,
    stop_process,
)
from rankloop.core.contracts import ImageRole


def render_result(campaign_id: str, number: int, m: int) -> dict[str, Any]:
    prefix = f"campaigns/{campaign_id}/rounds/{number:04d}"
    images = [
        {
            "index": i,
            "key": f"{prefix}/images/{i:02d}.png",
            "thumb_key": f"{prefix}/thumbs/{i:02d}.webp",
            "role": ImageRole.ATTENTION if i == m else ImageRole.CANDIDATE,
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


def turnaround(
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
                "rankloop.coord.round_rendered",
                args=(render_result(cid, number, m),),
                queue="coord",
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
        stop_process(worker)
    return {"ranking in -> render enqueued": to_enqueue, "render done -> round open": to_open}
