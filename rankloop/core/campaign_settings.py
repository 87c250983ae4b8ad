"""A campaign's settings as one typed model, each default and bound written once.

:class:`CampaignFields` holds every setting an owner gives a campaign with its default and its
bounds (the render fields come from :class:`rankloop.core.contracts.RenderFields`). The create
request (``service.schemas.CampaignCreate``) builds on it, and :class:`CampaignSettings` is what
a campaign stores (the ``settings`` JSON column) parsed once where the campaign is loaded
(``service.models.Campaign.config``): render fields resolved to the generator's defaults, the
lease resolved, the optimizer options the owner set, the image salt. A stored row from an older
release that lacks a key gets its default here, and keys this release does not know are ignored
(the stored JSON itself keeps them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from rankloop.core.consensus import METHODS
from rankloop.core.contracts import (
    DEFAULT_FEED,
    MAX_LEASE_S,
    MAX_TEST_DELAY_S,
    MIN_LEASE_S,
    FeedName,
    RenderFields,
    default_lease_s,
    with_generator_defaults,
)
from rankloop.core.optimizer_schema import Integer
from rankloop.core.verdict import VERDICT_MIN_ROUNDS

ConsensusMethod = Literal[METHODS]  # type: ignore[valid-type]
# What shows a campaign's images: the optimizer renders each round from the last one's
# consensus; an image set's rounds are the owner's own items (service.image_sets), all open at
# once, with no optimizer and no render.
CampaignKind = Literal["optimizer", "image_set"]
IMAGE_SET: Final = "image_set"
log = logging.getLogger(__name__)

MAX_ROUNDS: Final = 10_000  # a campaign's round budget
# Every duration and count of a campaign has a floor and a ceiling: a value outside them makes
# no working campaign (a lease of 1e-300 s ends before the page shows it, a deadline of 1e-300 s
# closes or extends its round on every sweep) and is refused at create (422 naming the field).
# A round is open at least half a minute and at most a week.
MIN_ROUND_DEADLINE_S: Final = 30.0
MAX_ROUND_DEADLINE_S: Final = 7 * 24 * 3600
# A render not back after render_timeout_s is sent again: under a minute re-sends renders that
# are merely queued behind others; over a day a lost one is never noticed.
MIN_RENDER_TIMEOUT_S: Final = 60.0
MAX_RENDER_TIMEOUT_S: Final = 24 * 3600
MAX_QUORUM: Final = 1000  # rankings a round waits for
QuorumRule = Literal["fixed", "adaptive"]
# Above 0.999 the bootstrap's draws (rankloop.core.settle.SETTLE_DRAWS) cannot tell it apart.
MAX_SETTLE_CONFIDENCE: Final = 0.999
# A straggler is a lease past a multiple of the median: at 1 every other lease would be one.
MIN_STRAGGLER_AFTER: Final = 1.0
MAX_STRAGGLER_AFTER: Final = 100.0
MAX_TASKS_PER_ANNOTATOR: Final = 100_000
MAX_RECRUIT_CAP: Final = 100_000  # participants /join admits to one campaign
# A completion code as crowd platforms issue them (Prolific: eight letters and digits), and
# where a finished worker is sent: https only (a worker's browser follows it unasked).
COMPLETION_CODE: Final = r"^[A-Za-z0-9_-]{1,32}$"
CompletionCode = Annotated[str, Field(pattern=COMPLETION_CODE)]
CompletionUrl = Annotated[str, Field(pattern=r"^https://[^\s\x00]+$", max_length=2000)]


class CampaignFields(RenderFields):
    """Every setting of a campaign an owner may give, with its default and bounds."""

    annotators_per_round: Integer = Field(
        default=3, ge=1, le=MAX_QUORUM, description="quorum of rankings"
    )
    # Adaptive quorum (rankloop.core.settle): a round closes once the decision it feeds is
    # settled, at min_annotators_per_round at the least and annotators_per_round (the cap) at
    # the most. Fixed stays the default until the benchmark (`rankloop bench campaign
    # --quorum`) says otherwise.
    quorum: QuorumRule = Field(
        default="fixed",
        description="fixed: every round waits for annotators_per_round rankings; adaptive: a "
        "round closes from min_annotators_per_round on once its decision is settled",
    )
    min_annotators_per_round: Integer = Field(
        default=2, ge=1, le=MAX_QUORUM, description="adaptive quorum: rankings a round needs"
    )
    settle_confidence: float = Field(
        default=0.9,
        ge=0.5,
        le=MAX_SETTLE_CONFIDENCE,
        description="adaptive quorum: how sure the consensus must be of the round's decision",
    )
    # No waiting for stragglers: the round's last slot is offered to one more annotator once
    # the lease on it has run this many times the campaign's median ranking time. Null (the
    # default, and every stored campaign older than the setting): never.
    straggler_after: float | None = Field(
        default=None,
        ge=MIN_STRAGGLER_AFTER,
        le=MAX_STRAGGLER_AFTER,
        description="offer a round's last slot to one more annotator once its lease has run "
        "this many times the campaign's median ranking time; null: never",
    )
    rounds: Integer = Field(default=10, ge=1, le=MAX_ROUNDS, description="round budget")
    round_deadline_s: float = Field(
        default=600.0,
        ge=MIN_ROUND_DEADLINE_S,
        le=MAX_ROUND_DEADLINE_S,
        description="seconds a round stays open before it closes on its quorum or is extended",
    )
    lease_s: float | None = Field(
        default=None,
        ge=MIN_LEASE_S,
        le=MAX_LEASE_S,
        description="seconds a task stays an annotator's; null: derived from m, k and the image "
        "size (rankloop.core.contracts.default_lease_s), extended by the images' loading time",
    )
    render_timeout_s: float = Field(
        default=900.0,
        ge=MIN_RENDER_TIMEOUT_S,
        le=MAX_RENDER_TIMEOUT_S,
        description="seconds before a render not back is sent again",
    )
    allow_ties: bool = Field(default=False, description="annotators may declare ties")
    tasks_per_annotator: Integer = Field(
        default=10,
        ge=1,
        le=MAX_TASKS_PER_ANNOTATOR,
        description="an annotator's quota: tasks before the completion code",
    )
    # The recruitment link (/join) works only when the owner turns it on.
    recruit: bool = Field(default=False, description="open the /join recruitment link")
    recruit_cap: Integer = Field(
        default=100,
        ge=0,
        le=MAX_RECRUIT_CAP,
        description="participants /join admits (owner links apart)",
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
    # The attention policy. A worker clicking at random ranks the degraded copy last about once
    # in m + 1 tasks, so fails nearly every check; an honest worker slips now and then. The
    # default (null) withholds the code from a worker who failed more than half of their tasks'
    # checks, and at least 2: one slip is forgiven even on a quota of 1 or 2, a clicker is not.
    max_attention_failures: Integer | None = Field(
        default=None,
        ge=0,
        le=100000,
        description="the completion code only for a participant who failed at most this many "
        "attention checks; null: withheld when they failed more than half of their tasks' "
        "checks and at least 2",
    )
    kind: CampaignKind = Field(
        default="optimizer",
        description="optimizer: rounds rendered by the optimizer; image_set: the owner's own "
        "images, one round per imported item (POST /api/campaigns/<id>/items)",
    )
    consensus_method: ConsensusMethod = Field(
        default="auto",
        description="how a round's rankings merge into one order (auto: scaled "
        "Plackett-Luce with learnt annotator reliability)",
    )
    # What the optimizer is told: the weighted pairwise matrix beat the order alone in
    # `rankloop bench consensus` (feed study: lower f/f0 at each noise level and with top-k).
    consensus_feed: FeedName = Field(
        default=DEFAULT_FEED,
        description="what the optimizer is told: the weighted pairwise matrix or the order",
    )
    # The crowd's verdict (rankloop.core.verdict): a last round asking delivered vs start.
    verdict: bool | None = Field(
        default=None,
        description="end with a verdict round (the delivered image against the starting one, "
        f"asked first of annotators who did not steer); null: on for campaigns of at least "
        f"{VERDICT_MIN_ROUNDS} rounds",
    )

    @model_validator(mode="after")
    def _quorum_bounds(self) -> CampaignFields:
        if self.quorum == "adaptive" and self.min_annotators_per_round > self.annotators_per_round:
            raise ValueError(
                f"min_annotators_per_round ({self.min_annotators_per_round}) must not exceed "
                f"annotators_per_round ({self.annotators_per_round}), the adaptive quorum's cap"
            )
        return self


def first_quorum(settings: CampaignFields) -> int:
    """The rankings a new round waits for before it may close: the minimum of an adaptive
    quorum, the whole quorum of a fixed one (:func:`service.statements.round_quorum`)."""
    if settings.quorum == "adaptive":
        return min(settings.min_annotators_per_round, settings.annotators_per_round)
    return settings.annotators_per_round


def attention_limit(settings: CampaignFields) -> tuple[int, int]:
    """The attention policy as two numbers ``(most, share)``: a participant who failed ``failed``
    checks in ``done`` tasks is over it when ``failed > most`` and ``2 * failed > done * share``
    (``share`` 1: more than half; 0: the count alone). :func:`over_attention_limit`, and the
    statement that credits a ranking (``service.crediting.credit_annotator``), read these."""
    if settings.max_attention_failures is None:
        return 1, 1  # at least 2 failed, and more than half
    return settings.max_attention_failures, 0


def over_attention_limit(settings: CampaignFields, failed: int, done: int) -> bool:
    """Whether ``failed`` attention checks in ``done`` tasks withhold the completion code."""
    most, share = attention_limit(settings)
    return failed > most and 2 * failed > done * share


def verdict_wanted(settings: CampaignFields) -> bool:
    """Whether the campaign ends with a verdict round (setting ``verdict``, else its length)."""
    if settings.verdict is not None:
        return settings.verdict
    return settings.rounds >= VERDICT_MIN_ROUNDS


def lease_of(settings: Mapping[str, Any]) -> float:
    """A campaign's lease in seconds: ``lease_s`` as the owner set it, else the one its ``m``,
    ``k``, image size and attention check call for (``default_lease_s``; render fields resolved
    to the generator's defaults, a key an older row lacks at its default). The one derivation:
    the create request stores it, a stored row without one gets it."""
    if settings.get("lease_s") is not None:
        return settings["lease_s"]  # as set (a stored value the model refuses is its own error)
    given = with_generator_defaults(dict(settings))
    return default_lease_s(
        **{
            name: given.get(name, CampaignFields.model_fields[name].get_default())
            for name in ("m", "k", "width", "height", "attention_check")
        }
    )


# What a stored campaign without ``consensus_feed`` (older than the setting) is told.
LEGACY_FEED: Final[FeedName] = "order"


class CampaignSettings(CampaignFields):
    """A campaign's stored settings, resolved: what the coordinator reads (``campaign.config``).

    Parse a stored JSON object with :meth:`from_stored`.
    """

    model_config = ConfigDict(extra="ignore")

    # Always resolved in a stored campaign (CampaignCreate.settings derives it: lease_of).
    lease_s: float = Field(ge=MIN_LEASE_S, le=MAX_LEASE_S)
    # The RankSGD options the owner set; the optimizer's own defaults fill the rest.
    optimizer: dict[str, Any] = Field(default_factory=dict)
    # The campaign's secret for image names, made with its first round ("" until then).
    image_salt: str = ""
    # A test hook no owner can set (the create schema lacks it): the render's pause between a
    # round's objects and its manifest, which the fault tests put in the stored row.
    test_delay_s: float = Field(default=0.0, ge=0.0, le=MAX_TEST_DELAY_S)

    @model_validator(mode="before")
    @classmethod
    def _resolved(cls, data: Any) -> Any:
        """Fill what an older row may lack: the generator's render defaults, the lease."""
        if not isinstance(data, Mapping):
            return data
        out = with_generator_defaults(dict(data))
        # A campaign from before consensus_feed existed was told the order: it goes on so.
        out.setdefault("consensus_feed", LEGACY_FEED)
        with contextlib.suppress(TypeError, ValueError):  # a bad m, k or size: its own field's
            out["lease_s"] = lease_of(out)  # error says so
        return out

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> CampaignSettings:
        """A campaign's stored ``settings`` JSON, typed; missing keys take their defaults.

        The bounds and choices are checked where values come in (the API); a stored value the
        model would refuse is kept as stored, and logged, so that one odd row fails where it is
        used (a consensus method no one knows fails the close, which is recorded), not every
        request that loads the campaign. A tool may store beyond a bound on purpose
        (``rankloop bench api``'s unreachable quorum).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = error.errors(include_url=False, include_input=False)
            if not all(p["loc"] and p["loc"][0] in data for p in problems):
                raise  # a rule between fields (k > m): no stored row breaks one
            odd = {str(p["loc"][0]) for p in problems}
            log.warning("campaign settings kept as stored, unchecked: %s", error)
            within = cls.model_validate({k: v for k, v in data.items() if k not in odd})
            return within.model_copy(update={name: data[name] for name in odd})


__all__ = [
    "COMPLETION_CODE",
    "IMAGE_SET",
    "MAX_QUORUM",
    "MAX_RECRUIT_CAP",
    "MAX_RENDER_TIMEOUT_S",
    "MAX_ROUNDS",
    "MAX_ROUND_DEADLINE_S",
    "MAX_TASKS_PER_ANNOTATOR",
    "MIN_RENDER_TIMEOUT_S",
    "MIN_ROUND_DEADLINE_S",
    "CampaignFields",
    "CampaignKind",
    "CampaignSettings",
    "CompletionCode",
    "CompletionUrl",
    "ConsensusMethod",
    "QuorumRule",
    "attention_limit",
    "first_quorum",
    "lease_of",
    "over_attention_limit",
    "verdict_wanted",
]
