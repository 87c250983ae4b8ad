"""``rankloop streams``: the stream process (:mod:`service.push.server`), which holds the
pages' live streams: run one or more beside the web tier and route ``/api/tasks/stream`` and
``/api/campaigns/*/stream`` to them (docs/guides/deploy.md), or set ``RANKLOOP_STREAM_URL`` to
its public origin. ``rankloop up`` runs one on its own.
"""

from __future__ import annotations

import logging

import click


@click.command("streams")
@click.option("--bind", default="127.0.0.1:8001", show_default=True, help="host:port to listen on")
def streams_command(bind: str) -> None:
    """Hold the pages' live streams (server-sent events), told of changes by the database."""
    from rankloop.core.settings import load_settings
    from rankloop.core.startup import announce
    from service.push.server import run

    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port, e.g. 0.0.0.0:8001", param_hint="--bind")
    settings = load_settings()
    announce("rankloop streams", settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run(settings, host, int(port))
