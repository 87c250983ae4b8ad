"""``rankloop serve``: the coordinator's web tier under gunicorn (production: PostgreSQL, Redis
and S3 from the ``RANKLOOP_*`` settings).

Its gunicorn settings are :mod:`rankloop.commands.gunicorn_conf`'s, a file of the package (so it
is there in a wheel install), the module ``gunicorn -c python:rankloop.commands.gunicorn_conf``
reads in the image and the cluster manifest: both ways to start the web tier agree.
``--bind``, ``--workers`` and ``--threads`` override that file's values when given.
"""

from __future__ import annotations

from pathlib import Path

import click

# Beside this module in the installed package; not imported here (it is a gunicorn config).
GUNICORN_CONF = Path(__file__).with_name("gunicorn_conf.py")


@click.command("serve")
@click.option("--bind", default=None, help="[default: the config's, GUNICORN_BIND or 0.0.0.0:8000]")
@click.option("--workers", default=None, type=int, help="[default: the config's, 2 x cores]")
@click.option("--threads", default=None, type=int, help="[default: the config's, 4]")
@click.option("--config", "config_path", default=str(GUNICORN_CONF), show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="gunicorn settings file")  # fmt: skip
def serve_command(
    bind: str | None, workers: int | None, threads: int | None, config_path: str
) -> None:
    """Run the web tier under gunicorn (production: PostgreSQL, Redis, S3 from RANKLOOP_*)."""
    from gunicorn.app.base import Application

    from rankloop.core.settings import load_settings
    from rankloop.core.startup import announce

    announce("rankloop serve", load_settings())
    overrides = {"bind": bind, "workers": workers, "threads": threads}

    class Server(Application):
        def init(self, parser, opts, args) -> None:  # no command line of gunicorn's own
            return None

        def load_config(self) -> None:
            self.load_config_from_file(config_path)
            for key, value in overrides.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            from rankloop.commands.web import create_web_app

            return create_web_app()

    Server().run()
