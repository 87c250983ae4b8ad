"""A route's contract, declared once, on its view: :func:`operation` registers the Flask route
and records the operation (summary, security, request model, query parameters, replies) in
:data:`OPERATIONS`, from which :mod:`service.api.openapi` builds the OpenAPI document.

::

    @operation(bp, "POST", "", summary="Create a campaign", auth="owner", body=CampaignCreate,
               responses={201: Reply("Created", r.Campaign)})
    def create_campaign(): ...

:func:`drift` compares an app's URL rules with the operations: a coordinator route without a
contract, or a contract without its route (or with other methods), is a test failure.

This module imports Flask and pydantic only, so that any module of the coordinator that serves
a route (the API, the probes, the metrics) can use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Blueprint, Flask
from pydantic import BaseModel
from werkzeug.routing import Rule

JSON = "application/json"
NDJSON = "application/x-ndjson"

# Who may call an operation; a tuple is alternatives. The names of their security schemes:
Auth = Literal["owner", "annotator", "ticket"]
SCHEMES: dict[Auth, str] = {
    "owner": "ownerKey",  # Bearer: RANKLOOP_ADMIN_TOKEN or an owner key
    "annotator": "annotatorToken",  # Bearer: the token from the task link
    "ticket": "streamTicket",  # ?ticket= from a stream-ticket call: a stream's alternative
}

# A query parameter: a string enum, () for any string, or a JSON schema.
Query = tuple[str, ...] | dict[str, Any]

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class Reply:
    """One status of an operation: a body of ``model`` in each of ``media`` (none: no body)."""

    description: str
    model: type[BaseModel] | None = None
    media: tuple[str, ...] = (JSON,)


def ok(model: type[BaseModel]) -> dict[int, Reply]:
    return {200: Reply("OK", model)}


@dataclass(frozen=True)
class Operation:
    """What one route promises: recorded by :func:`operation`, served in the document."""

    endpoint: str  # Flask's endpoint name, "<blueprint>.<name>": what ties it to its rule
    method: str  # upper case, as Flask has it
    summary: str
    security: tuple[Auth, ...]  # alternatives; () is public
    responses: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    query: Mapping[str, Query] = field(default_factory=dict)
    module: str = ""  # the view's module
    upload: tuple[str, ...] = ()  # a body that is a file, in one of these media types


# endpoint -> its operation, in declaration order; filled as the view modules are imported.
OPERATIONS: dict[str, Operation] = {}


def operation(
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    responses: Mapping[int, Reply],
    auth: Auth | tuple[Auth, ...] | None = None,
    body: type[BaseModel] | None = None,
    query: Mapping[str, Query] | None = None,
    endpoint: str | None = None,
    defaults: dict[str, Any] | None = None,
    upload: tuple[str, ...] = (),
) -> Callable[[View], View]:
    """Route ``method rule`` of ``bp`` to the decorated view (``endpoint``: by default the
    view's name; ``defaults``: Flask's) and record its contract. The view is returned as is, so
    one view may serve several operations (one decorator each, with its own ``endpoint``)."""

    def register(view: View) -> View:
        name = endpoint or view.__name__
        full = f"{bp.name}.{name}"
        if full in OPERATIONS:
            raise ValueError(f"endpoint {full!r} declared twice")
        OPERATIONS[full] = Operation(
            endpoint=full,
            method=method.upper(),
            summary=summary,
            security=(auth,) if isinstance(auth, str) else tuple(auth or ()),
            responses=dict(responses),
            body=body,
            query=dict(query or {}),
            module=view.__module__,
            upload=upload,
        )
        options: dict[str, Any] = {"defaults": defaults} if defaults else {}
        bp.add_url_rule(rule, name, view, methods=[method.upper()], **options)
        return view

    return register


IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})  # Flask adds them to every rule


def rule_methods(rule: Rule) -> set[str]:
    return set(rule.methods or ()) - IGNORED_METHODS


def openapi_path(rule: Rule) -> str:
    """``/objects/<path:key>`` -> ``/objects/{key}`` (OpenAPI's path parameters are strings)."""
    return re.sub(r"<(?:[^<>:]+:)?(\w+)>", r"{\1}", rule.rule)


def documented_rules(app: Flask) -> list[tuple[Rule, Operation]]:
    """The app's rules that have an operation, in the order the app routes them."""
    return [
        (rule, OPERATIONS[rule.endpoint])
        for rule in app.url_map.iter_rules()
        if rule.endpoint in OPERATIONS
    ]


def drift(app: Flask, packages: tuple[str, ...] = ("service",)) -> list[str]:
    """Where ``app``'s routes and the operations disagree, for views in ``packages``: a rule
    with no operation, an operation with no rule, or a rule whose methods are not its
    operation's. Empty when every route of those packages is declared once, with its contract.
    """

    def ours(module: str) -> bool:
        return any(module == p or module.startswith(f"{p}.") for p in packages)

    problems = []
    served: set[str] = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None or not ours(getattr(view, "__module__", "")):
            continue
        served.add(rule.endpoint)
        methods = sorted(rule_methods(rule))
        declared = OPERATIONS.get(rule.endpoint)
        if declared is None:
            problems.append(f"{' '.join(methods)} {rule.rule} ({rule.endpoint}): no operation")
        elif methods != [declared.method]:
            problems.append(
                f"{' '.join(methods)} {rule.rule} ({rule.endpoint}): "
                f"its operation is {declared.method}"
            )
    for name, declared in OPERATIONS.items():
        if ours(declared.module) and name not in served:
            problems.append(f"{declared.method} ({name}): an operation with no route")
    return problems
