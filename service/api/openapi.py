"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``, generated.

Every operation comes from its view: the :func:`service.routing.operation` decorator that
routes it records its contract (summary, security, request model, query parameters, replies),
and the document lists the app's routes that have one, at the paths the app serves them. Every
schema in it comes from a pydantic model: the request bodies from :mod:`service.schemas` (the
models that validate requests), the responses from :mod:`service.api.responses` (the models that
build them). Tests check that every route has its operation and every operation its route, that
the document validates, and that real responses of every endpoint match it.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from rankloop.core.version import __version__
from service.api import responses as r
from service.routing import (
    JSON,
    NDJSON,
    SCHEMES,
    Operation,
    Reply,
    documented_rules,
    openapi_path,
    operation,
)

bp = Blueprint("openapi", __name__)

JSON_MEDIA = (JSON, NDJSON)
REF = "#/components/schemas/{model}"
# A string in a URL: never a NUL byte (refused before any view, service/errors.py).
TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
DOCUMENT = "rankloop_openapi"  # app.extensions: the app's document, built once


def build_document(app: Flask) -> dict[str, Any]:
    """The document of ``app``'s routes, built on the first call (readiness probes and pages
    ask for it often; the routes are fixed once the app is made)."""
    document = app.extensions.get(DOCUMENT)
    if document is None:
        document = app.extensions[DOCUMENT] = _document(app)
    return document


def _document(app: Flask) -> dict[str, Any]:
    documented = documented_rules(app)
    operations = [declared for _, declared in documented]
    refs, schemas = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for rule, declared in documented:
        path = openapi_path(rule)
        paths.setdefault(path, {})[declared.method.lower()] = _operation(declared, path, refs)
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
                SCHEMES["owner"]: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "RANKLOOP_ADMIN_TOKEN or an owner key",
                },
                SCHEMES["annotator"]: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token from the task link",
                },
                SCHEMES["ticket"]: {
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


def _schemas(operations: list[Operation]) -> tuple[Refs, dict[str, Any]]:
    """Every model of ``operations``, and those they nest, flat under ``components/schemas``."""
    bodies = {op.body for op in operations if op.body is not None}
    replies = {reply.model for op in operations for reply in op.responses.values() if reply.model}
    # Requests are documented as they are validated, responses as they are serialized.
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "validation") for model in sorted(bodies, key=_name)),
        *((model, "serialization") for model in sorted(replies | {r.Error}, key=_name)),
    ]
    refs, top = models_json_schema(modes, ref_template=REF)
    return {model: refs[model, mode] for model, mode in modes}, dict(sorted(top["$defs"].items()))


def _name(model: type[BaseModel]) -> str:
    return model.__name__


def _operation(declared: Operation, path: str, refs: Refs) -> dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}
    document: dict[str, Any] = {
        "summary": declared.summary,
        "security": [{SCHEMES[auth]: []} for auth in declared.security],
        "responses": {
            **{str(status): _reply(reply, refs) for status, reply in declared.responses.items()},
            "4XX": error,
            "5XX": error,
        },
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": dict(TEXT)}
        for name in re.findall(r"{(\w+)}", path)
    ]
    for name, values in declared.query.items():
        schema: dict[str, Any] = dict(TEXT)
        if isinstance(values, dict):
            schema = dict(values)
        elif values:
            schema["enum"] = list(values)
        parameters.append({"name": name, "in": "query", "schema": schema})
    if parameters:
        document["parameters"] = parameters
    if declared.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": refs[declared.body]}},
        }
    if declared.upload:  # a file: its bytes as they are
        binary = {"schema": {"type": "string", "format": "binary"}}
        document["requestBody"] = {
            "required": True,
            "content": {media: dict(binary) for media in declared.upload},
        }
    return document


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


@operation(
    bp,
    "GET",
    "/api/openapi.json",
    summary="This document",
    responses={200: Reply("OpenAPI 3.1")},
)
def openapi_document():
    return jsonify(build_document(current_app))
