"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``, generated.

Every schema in it comes from a pydantic model: the request bodies from :mod:`service.schemas`
(the models that validate requests), the responses from :mod:`service.api.responses` (the
models that build them). Only the table of operations (:mod:`service.api.operations`) is written
by hand. Tests check that every route is in the table, that the document validates, and that
real responses of every endpoint match it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from rankloop.core.version import __version__
from service.api import responses as r
from service.api.operations import (
    ANNOTATOR,
    JSON,
    JSON_MEDIA,
    OPERATIONS,
    OWNER,
    REF,
    TEXT,
    TICKET,
    Operation,
    Reply,
)

bp = Blueprint("openapi", __name__)


@cache  # the same for the life of the process; readiness probes ask for it often
def build_document() -> dict[str, Any]:
    refs, schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rankloop coordinator",
            "version": __version__,
            "description": "Campaigns, rounds, annotator tasks, rankings and exports.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Error": _reply(Reply("Error (JSON)", r.Error), refs)},
            "securitySchemes": {
                OWNER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "RANKLOOP_ADMIN_TOKEN or an owner key",
                },
                ANNOTATOR: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token from the task link",
                },
                TICKET: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "ticket",
                    "description": "A stream ticket (POST .../stream-ticket): EventSource "
                    "cannot send an Authorization header, and a key never goes in a URL",
                },
            },
        },
    }


Refs = dict[type[BaseModel], dict[str, Any]]  # a model -> {"$ref": its place in components}


def _schemas() -> tuple[Refs, dict[str, Any]]:
    """Every model of the table, and those they nest, flat under ``components/schemas``."""
    bodies = {op.body for op in OPERATIONS if op.body is not None}
    replies = {reply.model for op in OPERATIONS for reply in op.replies.values() if reply.model}
    # Requests are documented as they are validated, responses as they are serialized.
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in sorted(bodies, key=_name)),
        *((model, "serialization") for model in sorted(replies | {r.Error}, key=_name)),
    ]
    refs, top = models_json_schema(modes, ref_template=REF)
    return {model: refs[model, mode] for model, mode in modes}, dict(sorted(top["$defs"].items()))


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _operation(operation: Operation, refs: Refs) -> dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}
    document: dict[str, Any] = {
        "summary": operation.summary,
        "security": [{scheme: []} for scheme in _alternatives(operation.security)],
        "responses": {
            **{str(status): _reply(reply, refs) for status, reply in operation.replies.items()},
            "4XX": error,
            "5XX": error,
        },
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": dict(TEXT)}
        for name in re.findall(r"{(\w+)}", operation.path)
    ]
    for name, values in operation.query.items():
        schema: dict[str, Any] = dict(TEXT)
        if isinstance(values, dict):
            schema = dict(values)
        elif values:
            schema["enum"] = list(values)
        parameters.append({"name": name, "in": "query", "schema": schema})
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": refs[operation.body]}},
        }
    return document


def _alternatives(security: str | tuple[str, ...] | None) -> tuple[str, ...]:
    return (security,) if isinstance(security, str) else security or ()


def _reply(reply: Reply, refs: Refs) -> dict[str, Any]:
    document: dict[str, Any] = {"description": reply.description}
    if reply.media:
        body = {} if reply.model is None else {"schema": refs[reply.model]}
        # The model describes the JSON media (an ndjson line is one object); Parquet, images
        # and archives are bytes.
        document["content"] = {
            media: dict(body) if media in JSON_MEDIA else {} for media in reply.media
        }
    return document


@bp.get("/api/openapi.json")
def openapi_document():
    return jsonify(build_document())
