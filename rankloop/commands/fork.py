"""``rankloop fork <campaign> --round N``: a new campaign from round N's state
(:mod:`service.forking` says what may change), its first render sent to the workers."""

from __future__ import annotations

import json

import click

from rankloop.commands.errors import CampaignId


@click.command("fork")
@click.argument("campaign_id", type=CampaignId())
@click.option("--round", "number", type=int, required=True, help="the round to start from")
@click.option("--prompt", help="a new prompt")
@click.option("--set", "pairs", multiple=True, metavar="NAME=JSON",
              help='another setting, e.g. --set annotators_per_round=5 --set rounds=20')  # fmt: skip
def fork_command(campaign_id: str, number: int, prompt: str | None, pairs: tuple[str, ...]) -> None:
    """Start a new campaign from round N of CAMPAIGN_ID (the coordinator's configuration:
    RANKLOOP_DATABASE_URL, RANKLOOP_BROKER_URL, ...)."""
    from service.app import create_app
    from service.forking import fork
    from service.rendering import run_step

    changes: dict = {} if prompt is None else {"prompt": prompt}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator:
            raise click.BadParameter(f"{pair!r}: write NAME=JSON", param_hint="--set")
        try:
            changes[name] = json.loads(value)
        except json.JSONDecodeError:
            changes[name] = value  # a bare word is a string
    app = create_app()
    with app.app_context():
        outcome = run_step(fork, campaign_id, number, changes, None, "cli", app=app)
    click.echo(outcome.campaign_id)
