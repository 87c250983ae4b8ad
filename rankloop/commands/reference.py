"""The documentation's reference pages, generated from the code so they cannot drift.

Four parts, each read from the one place that defines it: the ``RANKLOOP_*`` settings
(:class:`rankloop.core.settings.Settings`: type, default, bounds, which processes read it,
description), the fields of a campaign (the create request, ``service.schemas.CampaignCreate``,
as its JSON schema says), the HTTP API (the OpenAPI document the coordinator serves) and the
command line (``--help`` of every command). The docs build (``docs/hooks/reference.py``) puts
them where a page says ``<!-- generated: NAME -->``; ``python -m rankloop.commands.reference
NAME`` prints one.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

MARKER = re.compile(r"<!-- generated: (\w+) -->")


def _cell(text: object) -> str:
    """Text safe in a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(value: object) -> str:
    return f"`{_cell(value)}`" if value != "" else "(empty)"


def _type_name(annotation: Any) -> str:
    """A field's type as a reader would write it: ``int``, ``str or null``, ``"a" | "b"``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(annotation)
        )
    if origin is not None:
        return {dict: "JSON object", tuple: "list"}.get(origin, getattr(origin, "__name__", "?"))
    return {"Path": "path"}.get(annotation.__name__, annotation.__name__)


def _bounds(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        for attribute, word in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attribute, None)
            if value is not None:
                words.append(f"{word} {value:g}")
    return ", ".join(words)


def settings_reference() -> str:
    """Every ``RANKLOOP_*`` setting: one row each, in the order the settings module keeps them."""
    from rankloop.core.settings import Settings, env_name

    rows = [
        "| variable | type | default | bounds | read by | what it does |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, dict | tuple):
            default = json.dumps(default) if default else ""
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        rows.append(
            f"| `{env_name(name)}` | {_cell(_type_name(field.annotation))} | "
            f"{_code('unset' if default is None else default)} | {_bounds(field.metadata)} | "
            f"{_cell(extra.get('read_by', ''))} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


def _schema_type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_schema_type(s) for s in schema["anyOf"])
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    return str(schema.get("type", "any"))


def _schema_bounds(schema: dict[str, Any]) -> str:
    words = []
    for option in [schema, *schema.get("anyOf", [])]:
        for key, word in (
            ("minimum", "≥"),
            ("ge", "≥"),  # (how pydantic writes a bound inside an optional Integer)
            ("maximum", "≤"),
            ("le", "≤"),
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
            ("multipleOf", "multiple of"),
            ("multiple_of", "multiple of"),
        ):
            if key in option:
                words.append(f"{word} {option[key]}")
    return ", ".join(words)


def campaign_reference() -> str:
    """Every field of ``POST /api/campaigns`` (also what a fork and a preview take)."""
    from service.schemas import CampaignCreate

    schema = CampaignCreate.model_json_schema()
    required = set(schema.get("required", []))
    rows = [
        "| field | type | default | bounds | what it sets |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, prop in schema["properties"].items():
        default = "required" if name in required else json.dumps(prop.get("default"))
        rows.append(
            f"| `{name}` | {_cell(_schema_type(prop))} | `{_cell(default)}` | "
            f"{_cell(_schema_bounds(prop))} | {_cell(prop.get('description', ''))} |"
        )
    return "\n".join(rows) + "\n"


def _commands(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, click.Context(sub, info_name=name, parent=ctx))


def cli_reference() -> str:
    """The ``--help`` of every ``rankloop`` command, as the command line prints it."""
    from rankloop.commands.cli import main

    root = click.Context(main, info_name="rankloop", terminal_width=100, max_content_width=100)
    parts = []
    for command, ctx in _commands(main, root):
        text = command.get_help(ctx)
        # A default that names where the package lies (serve's gunicorn settings) says so.
        text = re.sub(r"\[default:\s*/\S*?/rankloop/", "[default: <package>/rankloop/", text)
        parts.append(f"### `{ctx.command_path}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document a coordinator serves (an app on a throwaway SQLite database)."""
    from rankloop.commands.web import create_web_app
    from service.api.openapi import build_document

    with tempfile.TemporaryDirectory() as scratch:
        app = create_web_app(
            {
                "DATABASE_URL": f"sqlite:///{Path(scratch) / 'docs.sqlite'}",
                "STORE_URL": str(Path(scratch) / "objects"),
                "BROKER_URL": "memory://",
            }
        )
        return build_document(app)


def api_reference() -> str:
    """Every operation of the OpenAPI document: method, path, who may call it, body, replies."""
    document = openapi_document()
    schemes = {
        name: scheme.get("description", name)
        for name, scheme in document["components"]["securitySchemes"].items()
    }
    parts = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            security = [name for alternative in op.get("security", []) for name in alternative]
            lines = [f"### `{method.upper()} {path}`", "", op["summary"], ""]
            who = ", or ".join(f"{name} ({schemes[name]})" for name in security) or "public"
            lines.append(f"- **Authorization**: {who}")
            for parameter in op.get("parameters", []):
                if parameter["in"] == "query":
                    kind = _schema_type(parameter["schema"])
                    lines.append(f"- **Query** `{parameter['name']}`: `{kind}`")
            # A JSON model, or an upload (a study's prompt file, an image set's items).
            for media, body in op.get("requestBody", {}).get("content", {}).items():
                lines.append(f"- **Body**: `{_schema_type(body.get('schema', {}))}` ({media})")
            for status, reply in op["responses"].items():
                if "$ref" in reply:
                    continue  # the shared error reply, said once on the page
                content: dict[str, Any] = reply.get("content", {})
                first: dict[str, Any] = next(iter(content.values()), {})
                schema = first.get("schema", {})
                model = f" `{_schema_type(schema)}`" if schema else ""
                media = ", ".join(content)
                lines.append(
                    f"- **{status}**: {_cell(reply['description'])}{model}"
                    + (f" ({media})" if media else "")
                )
            parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def datasets_reference() -> str:
    """The columns of every export table, as the Parquet writer declares them (pyarrow)."""
    from service.datasets import formats
    from service.datasets.rows import TABLES

    parts = []
    for table in TABLES:
        rows = [f"### `{table}`", "", "| column | type |", "| --- | --- |"]
        rows += [f"| `{f.name}` | `{_cell(f.type)}` |" for f in formats.schema(table)]
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_reference,
    "campaign": campaign_reference,
    "datasets": datasets_reference,
    "cli": cli_reference,
    "api": api_reference,
}


def fill(markdown: str) -> str:
    """``markdown`` with each ``<!-- generated: NAME -->`` replaced by that reference."""

    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise KeyError(f"no generated reference {name!r}: one of {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(generated, markdown)


if __name__ == "__main__":  # pragma: no cover
    print(GENERATORS[sys.argv[1]]())
