"""``rankloop db ...``: migrations and owner keys."""

from __future__ import annotations

from pathlib import Path

import click

from rankloop.core.settings import load_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def database_url(url: str | None) -> str:
    """``url``, else the coordinator's (``RANKLOOP_DATABASE_URL``, else SQLite under var/)."""
    return url or load_settings().database_url


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (creates it from nothing too)."""
    from alembic import command

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


@click.group("db")
def db_group() -> None:
    """Database: migrations (SQLite or PostgreSQL) and owner keys."""


@db_group.command("upgrade")
@click.option(
    "--url", help="SQLAlchemy URL (default: RANKLOOP_DATABASE_URL or var/rankloop.sqlite)"
)
@click.option("--revision", default="head", show_default=True)
def upgrade_command(url: str | None, revision: str) -> None:
    """Apply the migrations up to REVISION."""
    from rankloop.core.startup import announce

    if url is None:  # say which database the settings chose (and warn when no env was loaded)
        announce("rankloop db upgrade", load_settings())
    url = database_url(url)
    upgrade(url, revision)
    click.echo(f"database at {revision}: {url.split('@')[-1]}")


@db_group.command("downgrade")
@click.option("--url")
@click.argument("revision")
def downgrade_command(url: str | None, revision: str) -> None:
    """Revert the migrations down to REVISION (``base`` empties the database)."""
    from alembic import command

    command.downgrade(alembic_config(database_url(url)), revision)


@db_group.command("current")
@click.option("--url")
def current_command(url: str | None) -> None:
    """Show the database's revision."""
    from alembic import command

    command.current(alembic_config(database_url(url)))


@db_group.command("create-owner-key")
@click.option("--url")
@click.option("--name", required=True, help="who the key is for")
def create_owner_key(url: str | None, name: str) -> None:
    """Create an owner API key; it is printed once and only its hash is stored."""
    from sqlalchemy.orm import Session

    from service.auth import hash_token, new_token
    from service.db import make_engine
    from service.models import OwnerKey

    token = new_token()
    engine = make_engine(database_url(url))
    with Session(engine) as session:
        session.add(OwnerKey(name=name, key_hash=hash_token(token)))
        session.commit()
    engine.dispose()
    click.echo(token)
