"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Request bodies come from the pydantic models (the same ones that validate requests), so the
document cannot drift from the validation; a test checks that every route is in it and that
it validates with ``openapi-spec-validator``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from rankloop import __version__
from service.schemas import AnnotatorsCreate, CampaignCreate, RankingSubmit

bp = Blueprint("openapi", __name__)

OWNER: list[dict[str, list[str]]] = [{"ownerKey": []}]
ANNOTATOR: list[dict[str, list[str]]] = [{"annotatorToken": []}]
ERROR = {"$ref": "#/components/responses/Error"}
CAMPAIGN_ID = {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    security: list,
    responses: dict[str, Any],
    body: str | None = None,
    parameters: list | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": security,
        "responses": {**responses, "4XX": ERROR},
    }
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if parameters:
        operation["parameters"] = parameters
    return operation


OBJ = {"type": "object"}
CAMPAIGN = {"$ref": "#/components/schemas/Campaign"}


def build_document() -> dict[str, Any]:
    controls = {
        f"/api/campaigns/{{campaign_id}}/{action}": {
            "post": _op(
                f"{action.title()} the campaign",
                OWNER,
                {"200": _json(CAMPAIGN)},
                parameters=[CAMPAIGN_ID],
            )
        }
        for action in ("start", "pause", "resume", "stop")
    }
    paths: dict[str, Any] = {
        "/api/campaigns": {
            "post": _op(
                "Create a campaign", OWNER, {"201": _json(CAMPAIGN, "Created")}, "CampaignCreate"
            ),
            "get": _op(
                "List campaigns",
                OWNER,
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"campaigns": {"type": "array", "items": CAMPAIGN}},
                        }
                    )
                },
            ),
        },
        "/api/campaigns/{campaign_id}": {
            "get": _op(
                "Show a campaign: status, current round, best image, history",
                OWNER,
                {"200": _json(CAMPAIGN)},
                parameters=[CAMPAIGN_ID],
            ),
        },
        **controls,
        "/api/campaigns/{campaign_id}/annotators": {
            "post": _op(
                "Create annotators and their task links",
                OWNER,
                {"201": _json({"$ref": "#/components/schemas/AnnotatorLinks"}, "Created")},
                "AnnotatorsCreate",
                [CAMPAIGN_ID],
            ),
            "get": _op(
                "Annotators with reliability weight, throughput and flags",
                OWNER,
                {"200": _json(OBJ)},
                parameters=[CAMPAIGN_ID],
            ),
        },
        "/api/campaigns/{campaign_id}/recruit": {
            "get": _op(
                "The recruitment link for crowd platforms and its cap",
                OWNER,
                {"200": _json(OBJ)},
                parameters=[CAMPAIGN_ID],
            ),
        },
        "/api/campaigns/{campaign_id}/export": {
            "get": _op(
                "Every ranking as JSON lines (who, when, which images, order)",
                OWNER,
                {
                    "200": {
                        "description": "JSON lines",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    }
                },
                parameters=[
                    CAMPAIGN_ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["jsonl"]},
                    },
                ],
            ),
        },
        "/api/me": {
            "get": _op(
                "The annotator's progress and completion code", ANNOTATOR, {"200": _json(OBJ)}
            ),
        },
        "/api/tasks/next": {
            "get": _op(
                "The next task (a lease), shuffled for this annotator",
                ANNOTATOR,
                {
                    "200": _json({"$ref": "#/components/schemas/Task"}),
                    "204": {"description": "Nothing open for this annotator now"},
                },
            ),
        },
        "/api/tasks/{task_id}/ranking": {
            "post": _op(
                "Submit a ranking (image ids, best first; a list is a tie)",
                ANNOTATOR,
                {"201": _json(OBJ, "Stored")},
                "RankingSubmit",
                [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            ),
        },
        "/api/openapi.json": {
            "get": {"summary": "This document", "security": [], "responses": {"200": _json(OBJ)}}
        },
        "/join/{campaign_id}": {
            "get": {
                "summary": "Recruitment entry: creates (or finds) the participant's annotator, then redirects to the task page",
                "security": [],
                "parameters": [CAMPAIGN_ID]
                + [
                    {"name": p, "in": "query", "schema": {"type": "string"}}
                    for p in ("PROLIFIC_PID", "workerId", "participant_id")
                ],
                "responses": {"302": {"description": "Redirect to /task#token=..."}, "4XX": ERROR},
            }
        },
        "/objects/{key}": {
            "get": {
                "summary": "A round image or thumbnail from the local store (S3 stores hand out presigned URLs instead)",
                "security": [],
                "parameters": [
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "The image",
                        "content": {"image/png": {}, "image/webp": {}},
                    },
                    "4XX": ERROR,
                },
            }
        },
    }
    schemas = {
        name: _defs_to_components(
            model.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for name, model in (
            ("CampaignCreate", CampaignCreate),
            ("AnnotatorsCreate", AnnotatorsCreate),
            ("RankingSubmit", RankingSubmit),
        )
    }
    schemas.update(
        {
            "Campaign": {
                "type": "object",
                "required": ["id", "status", "settings"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "prompt": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": ["draft", "running", "paused", "stopped", "finished", "failed"],
                    },
                    "settings": OBJ,
                    "current_round": {"type": ["object", "null"]},
                    "best_image_url": {
                        "type": ["string", "null"],
                        "description": "the consensus winner of the latest decided round",
                    },
                    "current_best_image_url": {
                        "type": ["string", "null"],
                        "description": "the optimizer's current point, rendered clean",
                    },
                    "history": {"type": "array", "items": OBJ},
                },
            },
            "AnnotatorLinks": {
                "type": "object",
                "properties": {
                    "annotators": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "token": {"type": "string"},
                                "link": {"type": "string"},
                            },
                        },
                    }
                },
            },
            "Task": {
                "type": "object",
                "required": ["task_id", "round", "images"],
                "properties": {
                    "task_id": {"type": "string"},
                    "campaign_id": {"type": "string"},
                    "round": {"type": "integer"},
                    "k": {"type": ["integer", "null"]},
                    "allow_ties": {"type": "boolean"},
                    "expires_at": {"type": "string"},
                    "prompt": {"type": "string"},
                    "images": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "url": {"type": "string"},
                                "thumb_url": {"type": "string"},
                                "alt": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {},
                        },
                    }
                },
            },
        }
    )
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
            "responses": {"Error": _json({"$ref": "#/components/schemas/Error"}, "Error (JSON)")},
            "securitySchemes": {
                "ownerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "RANKLOOP_ADMIN_TOKEN or an owner key",
                },
                "annotatorToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token from the task link",
                },
            },
        },
    }


def _defs_to_components(schema: dict[str, Any]) -> dict[str, Any]:
    # pydantic puts nested models under $defs; components hold them flat instead.
    schema = dict(schema)
    schema.pop("$defs", None)
    return schema


@bp.get("/api/openapi.json")
def openapi_document():
    return jsonify(build_document())
