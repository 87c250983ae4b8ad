"""Request bodies, validated with pydantic; a failure becomes a 422 JSON error naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from rankloop.core.campaign_settings import (
    COMPLETION_CODE,
    IMAGE_SET,
    MAX_ROUNDS,
    CampaignFields,
    lease_of,
)
from rankloop.core.contracts import (
    MAX_LEASE_S,
    MAX_LOAD_CREDIT_S,
    MAX_PROMPT,
    Text,
    check_round_size,
    with_generator_defaults,
)
from rankloop.core.errors import InvalidInput
from rankloop.core.optimizer_schema import Integer, OptimizerOptions


class _Strict(BaseModel):
    # Strict: a JSON string is no number and no boolean ("m": "8", "start": "yes"), and a
    # number is finite (the JSON parser refuses NaN and Infinity too: service/json.py).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# Every field's default and bounds: rankloop.core.campaign_settings.CampaignFields (and, for the
# render fields, rankloop.core.contracts.RenderFields), which the stored settings share.
class CampaignCreate(CampaignFields):
    """A campaign's settings. One rule ties two fields and the schema cannot say it: ``k``
    is at most ``m`` (a 422 otherwise); ``optimizer`` has such rules of its own."""

    model_config = _Strict.model_config

    name: Text = Field(default="", max_length=200, description="a name for the owner's list")
    prompt: Text = Field(min_length=1, max_length=MAX_PROMPT, description="what to generate")
    optimizer: OptimizerOptions = Field(
        default_factory=OptimizerOptions,
        description="RankSGD options the owner sets; the optimizer's defaults fill the rest",
    )
    start: bool = Field(default=False, description="start the campaign at once")

    @model_validator(mode="after")
    def _fits(self) -> CampaignCreate:
        # (k <= m: RenderFields checks it first.)
        size = with_generator_defaults(
            self.model_dump(include={"generator", "model", "width", "height"})
        )
        check_round_size(self.generator, self.m, size["width"], size["height"])
        if self.kind == IMAGE_SET and self.start:
            raise ValueError("an image set starts once its items are imported: start: false")
        self._completion_fits()
        return self

    def _completion_fits(self) -> None:
        """Prolific's completion URL carries its code (``cc``): a code set too must be that one
        (else workers would be sent on with one code and shown another); unset, it is taken."""
        if self.completion_url is None:
            return
        url = urlsplit(self.completion_url)
        if not url.hostname:
            raise ValueError("completion_url: an https URL with a host")
        carried = parse_qs(url.query).get("cc", [None])[0]
        if carried is None:
            return
        if self.completion_code is None:
            if not re.fullmatch(COMPLETION_CODE, carried):
                raise ValueError(f"completion_url: its cc {carried!r} is no completion code")
            self.completion_code = carried
        elif self.completion_code != carried:
            raise ValueError(
                f"completion_code {self.completion_code!r} differs from the cc of completion_url "
                f"({carried!r}): give the code the platform issued once"
            )

    def settings(self) -> dict[str, Any]:
        """What the campaign stores and its renders use: every unset render field resolved."""
        settings = with_generator_defaults(
            self.model_dump(exclude={"name", "prompt", "start", "optimizer"})
        )
        # Only what the owner set: the optimizer's own defaults (rankloop.core.optimizer.options)
        # are the campaign defaults; its default round schedule ("verified") moves the delivered
        # image only to a point the crowd ranked above it.
        settings["optimizer"] = self.optimizer.given()
        settings["lease_s"] = lease_of(settings)
        return settings


# What a fork cannot change: the optimizer state, or the renders it was made with, depend on it.
FORK_KEEPS = ("generator", "model", "width", "height", "m", "k", "seed", "optimizer",
              "attention_check", "steps", "guidance", "scheduler", "kind")  # fmt: skip

# A fork's body: the round to start from, and any campaign setting a fork may change.
ForkCreate = create_model(
    "ForkCreate",
    __base__=_Strict,
    round=(Integer, Field(ge=0, lt=MAX_ROUNDS, description="the source round to start from")),
    **{  # type: ignore[call-overload]
        name: (Optional[info.rebuild_annotation()], Field(default=None))  # noqa: UP045
        for name, info in CampaignCreate.model_fields.items()
        if name not in (*FORK_KEEPS, "start")
    },
)


class AnnotatorsCreate(_Strict):
    count: Integer = Field(default=1, ge=1, le=1000)
    pool: bool = False


class AnnotatorRevoke(_Strict):
    exclude: bool = Field(
        default=False, description="also leave their rankings out of every later consensus"
    )


ImageId = Annotated[Text, Field(max_length=64)]
TiedGroup = Annotated[list[ImageId], Field(min_length=1, max_length=64)]


class RankingSubmit(_Strict):
    order: list[ImageId | TiedGroup] = Field(min_length=1, max_length=64)


class TaskShown(_Strict):
    """The task page's one report that a task's images are on screen: how long they took."""

    load_s: float = Field(
        ge=0,
        le=MAX_LEASE_S,
        description="seconds from the task's arrival to its images on screen; the lease is "
        "extended by this much, once, but never by more than the lease has run or "
        f"{MAX_LOAD_CREDIT_S:.0f} s",
    )


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
