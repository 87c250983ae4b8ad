"""Request bodies, validated with pydantic; a failure becomes a 422 JSON error naming the field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rankloop.core.contracts import (
    DEFAULT_M,
    MAX_GUIDANCE,
    MAX_M,
    MAX_SIDE,
    MAX_STEPS,
    MIN_M,
    MIN_SIDE,
    SIDE_MULTIPLE,
    with_generator_defaults,
)
from rankloop.core.errors import InvalidInput


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignCreate(_Strict):
    name: str = Field(default="", max_length=200)
    prompt: str = Field(min_length=1, max_length=2000)
    negative_prompt: str = Field(default="", max_length=2000)
    generator: Literal["cppn", "tiny-sd", "diffusers"] = "cppn"
    model: str | None = Field(default=None, max_length=300)
    m: int = Field(
        default=DEFAULT_M, ge=MIN_M, le=MAX_M, description="perturbed points per gradient round"
    )
    k: int | None = Field(
        default=None, ge=1, le=MAX_M, description="ranked items per task; null = full"
    )
    annotators_per_round: int = Field(default=3, ge=1, le=1000, description="quorum of rankings")
    rounds: int = Field(default=10, ge=1, le=10000, description="round budget")
    round_deadline_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    lease_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    render_timeout_s: float = Field(default=900.0, gt=0, le=24 * 3600)
    allow_ties: bool = False
    attention_check: bool = True
    tasks_per_annotator: int = Field(default=10, ge=1, le=100000)
    recruit_cap: int = Field(default=100, ge=0, le=100000)
    consensus_method: str = Field(default="auto", max_length=32)
    # What the optimizer is told: the weighted pairwise matrix beat the order alone in
    # `rankloop bench consensus` (feed study: lower f/f0 at each noise level and with top-k).
    consensus_feed: Literal["order", "pairwise"] = "pairwise"
    # Render settings: null takes the generator's default (rankloop.core.contracts), which the
    # stored campaign then shows; a diffusers size left null is the checkpoint's native size.
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(default=None, ge=0, le=MAX_GUIDANCE)
    width: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)
    height: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)
    scheduler: str | None = Field(default=None, max_length=64)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    optimizer: dict[str, Any] = Field(default_factory=dict)
    start: bool = False

    @model_validator(mode="after")
    def _k_fits(self) -> CampaignCreate:
        if self.k is not None and self.k > self.m:
            raise ValueError(f"k={self.k} exceeds m={self.m}: rank at most m images (or k=null)")
        return self

    def settings(self) -> dict[str, Any]:
        """What the campaign stores and its renders use: every unset render field resolved."""
        settings = with_generator_defaults(self.model_dump(exclude={"name", "prompt", "start"}))
        settings["optimizer"] = {**CAMPAIGN_OPTIMIZER_DEFAULTS, **settings["optimizer"]}
        return settings


# People see the current best after every round: it moves only when a ranked line search picks
# a better point, never by an unconfirmed gradient step (which can overshoot and spoil the image
# the crowd had agreed on). Owners may still set {"sgd_moves": true}.
CAMPAIGN_OPTIMIZER_DEFAULTS: dict[str, Any] = {"sgd_moves": False}


class AnnotatorsCreate(_Strict):
    count: int = Field(default=1, ge=1, le=1000)
    pool: bool = False


TiedGroup = list[str]


class RankingSubmit(_Strict):
    order: list[str | TiedGroup] = Field(min_length=1, max_length=64)


def validate(model: type[BaseModel], payload: Any) -> Any:
    """Parse ``payload`` into ``model``; raise :class:`InvalidInput` (422) with the details."""
    if payload is None:
        raise InvalidInput(
            "the request body must be a JSON object (Content-Type: application/json)"
        )
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ]
        raise UnprocessableInput(
            "; ".join(f"{d['field']}: {d['message']}" for d in details), details=details
        ) from None


class UnprocessableInput(InvalidInput):
    http_status = 422
    code = "validation_error"

    def __init__(self, message: str, details: Any = None):
        super().__init__(message)
        self.details = details
