"""What every blueprint shares: the JSON body, URLs for images and links, time formatting."""

from __future__ import annotations

import datetime as dt
from typing import Any, overload

from flask import current_app, request

from rankloop.core.errors import InvalidInput
from rankloop.core.storage import ObjectStore


def json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("send a JSON object with 'Content-Type: application/json'")
    return body


@overload
def iso(moment: dt.datetime) -> str: ...
@overload
def iso(moment: dt.datetime | None) -> str | None: ...
def iso(moment: dt.datetime | None) -> str | None:
    return (
        None if moment is None else moment.replace(microsecond=moment.microsecond).isoformat() + "Z"
    )


def store() -> ObjectStore:
    return current_app.extensions["rankloop_store"]


@overload
def object_url(key: str) -> str: ...  # an object's key is never empty
@overload
def object_url(key: str | None) -> str | None: ...
def object_url(key: str | None) -> str | None:
    """The store's presigned URL when it has one (S3), else the coordinator's ``/objects/``."""
    if not key:
        return None
    url = store().url(key, int(current_app.config["PRESIGN_EXPIRES_S"]))
    # The same as url_for("exports.get_object", key=key), without a routing lookup per image.
    return url or f"{request.script_root}/objects/{key}"


def base_url() -> str:
    return (current_app.config.get("BASE_URL") or request.host_url).rstrip("/")


def task_link(token: str) -> str:
    return f"{base_url()}/task#token={token}"
