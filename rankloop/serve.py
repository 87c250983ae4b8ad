"""``rankloop serve``: the coordinator's web tier under gunicorn (production: PostgreSQL, Redis
and S3 from the ``RANKLOOP_*`` settings)."""

from __future__ import annotations

import os

import click


def _warm_up_gunicorn_worker(_worker) -> None:
    from service.tasks import warm_up_consensus

    warm_up_consensus()


@click.command("serve")
@click.option("--bind", default="127.0.0.1:8000", show_default=True)
@click.option(
    "--workers", default=None, type=int, help="gunicorn worker processes [default: 2 x cores]"
)
@click.option("--threads", default=4, show_default=True, type=int)
def serve_command(bind: str, workers: int | None, threads: int) -> None:
    """Run the web tier under gunicorn (production: PostgreSQL, Redis, S3 from RANKLOOP_*)."""
    from gunicorn.app.base import BaseApplication

    from service.app import create_app

    class Server(BaseApplication):
        def load_config(self) -> None:
            options = {"bind": bind, "workers": workers or 2 * (os.cpu_count() or 1),
                       "threads": threads, "worker_class": "gthread", "accesslog": "-",
                       "preload_app": False}  # fmt: skip
            for key, value in options.items():
                self.cfg.set(key, value)
            self.cfg.set("post_worker_init", _warm_up_gunicorn_worker)

        def load(self):
            return create_app()

    Server().run()
