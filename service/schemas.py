"""Request bodies, validated with pydantic; a failure becomes a 422 JSON error naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from rankloop.core.consensus import METHODS
from rankloop.core.contracts import (
    DEFAULT_M,
    MAX_GUIDANCE,
    MAX_LEASE_S,
    MAX_LOAD_CREDIT_S,
    MAX_M,
    MAX_SIDE,
    MAX_STEPS,
    MIN_M,
    MIN_SIDE,
    SIDE_MULTIPLE,
    check_round_size,
    default_lease_s,
    with_generator_defaults,
)
from rankloop.core.errors import InvalidInput
from rankloop.core.optimizer_schema import Integer, OptimizerOptions

# Text that a database can hold: PostgreSQL refuses NUL in text, so it is refused here, as the
# document says, instead of failing in the driver.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]
ConsensusMethod = Literal[METHODS]  # type: ignore[valid-type]


MAX_ROUNDS = 10_000  # a campaign's round budget
# A completion code as crowd platforms issue them (Prolific: eight letters and digits), and
# where a finished worker is sent: https only (a worker's browser follows it unasked).
COMPLETION_CODE = r"^[A-Za-z0-9_-]{1,32}$"
CompletionCode = Annotated[str, Field(pattern=COMPLETION_CODE)]
CompletionUrl = Annotated[str, Field(pattern=r"^https://[^\s\x00]+$", max_length=2000)]


class _Strict(BaseModel):
    # Strict: a JSON string is no number and no boolean ("m": "8", "start": "yes"), and a
    # number is finite (the JSON parser refuses NaN and Infinity too: service/json.py).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class CampaignCreate(_Strict):
    """A campaign's settings. One rule ties two fields and the schema cannot say it: ``k``
    is at most ``m`` (a 422 otherwise); ``optimizer`` has such rules of its own."""

    name: Text = Field(default="", max_length=200)
    prompt: Text = Field(min_length=1, max_length=2000)
    negative_prompt: Text = Field(default="", max_length=2000)
    generator: Literal["cppn", "tiny-sd", "diffusers"] = "cppn"
    model: Text | None = Field(default=None, max_length=300)
    m: Integer = Field(
        default=DEFAULT_M, ge=MIN_M, le=MAX_M, description="perturbed points per gradient round"
    )
    k: Integer | None = Field(
        default=None, ge=1, le=MAX_M, description="ranked items per task, at most m; null = full"
    )
    annotators_per_round: Integer = Field(
        default=3, ge=1, le=1000, description="quorum of rankings"
    )
    rounds: Integer = Field(default=10, ge=1, le=MAX_ROUNDS, description="round budget")
    round_deadline_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    lease_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LEASE_S,
        description="seconds a task stays an annotator's; null: derived from m, k and the image "
        "size (rankloop.core.contracts.default_lease_s), extended by the images' loading time",
    )
    render_timeout_s: float = Field(default=900.0, gt=0, le=24 * 3600)
    allow_ties: bool = False
    attention_check: bool = True
    tasks_per_annotator: Integer = Field(default=10, ge=1, le=100000)
    # The recruitment link (/join) works only when the owner turns it on.
    recruit: bool = Field(default=False, description="open the /join recruitment link")
    recruit_cap: Integer = Field(
        default=100, ge=0, le=100000, description="participants /join admits (owner links apart)"
    )
    completion_code: CompletionCode | None = Field(
        default=None,
        description="the code a finished participant gets (e.g. Prolific's completion code); "
        "null: the cc of completion_url, else a random one",
    )
    completion_url: CompletionUrl | None = Field(
        default=None,
        description="where the task page sends a finished participant, e.g. "
        "https://app.prolific.com/submissions/complete?cc=CODE; null: the code is shown",
    )
    consensus_method: ConsensusMethod = "auto"
    # What the optimizer is told: the weighted pairwise matrix beat the order alone in
    # `rankloop bench consensus` (feed study: lower f/f0 at each noise level and with top-k).
    consensus_feed: Literal["order", "pairwise"] = "pairwise"
    # Render settings: null takes the generator's default (rankloop.core.contracts), which the
    # stored campaign then shows; a diffusers size left null is the checkpoint's native size.
    steps: Integer | None = Field(default=None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(default=None, ge=0, le=MAX_GUIDANCE)
    width: Integer | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE)
    height: Integer | None = Field(
        default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_MULTIPLE
    )
    scheduler: Text | None = Field(default=None, max_length=64)
    seed: Integer = Field(default=0, ge=0, le=2**32 - 1)
    optimizer: OptimizerOptions = Field(default_factory=OptimizerOptions)
    start: bool = False

    @model_validator(mode="after")
    def _k_fits(self) -> CampaignCreate:
        if self.k is not None and self.k > self.m:
            raise ValueError(f"k={self.k} exceeds m={self.m}: rank at most m images (or k=null)")
        size = with_generator_defaults(
            self.model_dump(include={"generator", "model", "width", "height"})
        )
        check_round_size(self.generator, self.m, size["width"], size["height"])
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
        if settings.get("lease_s") is None:
            settings["lease_s"] = default_lease_s(
                self.m, self.k, settings["width"], settings["height"], self.attention_check
            )
        return settings


# What a fork cannot change: the optimizer state, or the renders it was made with, depend on it.
FORK_KEEPS = ("generator", "model", "width", "height", "m", "k", "seed", "optimizer",
              "attention_check", "steps", "guidance", "scheduler")  # fmt: skip

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
