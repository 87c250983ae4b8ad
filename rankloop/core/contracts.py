"""The contracts between the tiers, each fact written once.

The coordinator (``service/``) and the render workers (``gpu_worker/``) never import each other:
they meet on the broker, by the task and queue names below, and in the object store, by the key
layout of :mod:`rankloop.core.storage`. Everything both sides must agree on lives here: names,
statuses, limits, the generators and their defaults, and the render message and its result.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rankloop.core.errors import InvalidInput
from rankloop.core.optimizer_schema import Integer

# -- broker: task and queue names ------------------------------------------------------------
GPU_QUEUE: Final = "gpu"  # render workers listen here
COORD_QUEUE: Final = "coord"  # the coordinator's bookkeeping workers listen here
RENDER_TASK: Final = "rankloop.render_round"
ROUND_RENDERED_TASK: Final = "rankloop.coord.round_rendered"
ROUND_FAILED_TASK: Final = "rankloop.coord.round_failed"
CLOSE_ROUND_TASK: Final = "rankloop.coord.close_round"
SWEEP_TASK: Final = "rankloop.coord.sweep"


# -- statuses ----------------------------------------------------------------------------------
# StrEnums: a member equals its word, so the columns stay strings and the wire shows the word.
class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"


# No new round starts from an ended campaign. A live one (started, not ended) has its rounds
# rendered, a paused one's too (so it resumes where it stopped), and fails with a failed render.
CAMPAIGN_ENDED: Final = (CampaignStatus.STOPPED, CampaignStatus.FINISHED, CampaignStatus.FAILED)
CAMPAIGN_LIVE: Final = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
# Ended, not failed: a participant who ranked is owed the completion code (quota met or not).
CAMPAIGN_CONCLUDED: Final = (CampaignStatus.FINISHED, CampaignStatus.STOPPED)


class RoundStatus(StrEnum):
    RENDERING = "rendering"
    QUEUED = "queued"  # an image set's item waiting for a place among its open rounds
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class CloseReason(StrEnum):
    """Why a round closed (``rounds.close_reason``, shown per round to the owner)."""

    SETTLED = "settled"  # adaptive quorum: the decision it feeds was settled
    CAP = "cap"  # its quorum (the cap, annotators_per_round) was in
    DEADLINE = "deadline"  # adaptive quorum: its deadline came with the minimum in, unsettled
    STRAGGLER = "straggler"  # an extra annotator was offered the last slot and ranked first


class TaskStatus(StrEnum):
    """An annotator's leased task ("assignment" in the database): leased until submitted."""

    LEASED = "leased"
    SUBMITTED = "submitted"


# -- a round's images ------------------------------------------------------------------------
class ImageRole(StrEnum):
    CANDIDATE = "candidate"  # an optimizer point; its ``index`` is the optimizer's index
    ATTENTION = "attention"  # the degraded copy of the current best (attention check)
    # A verdict round's two images (rankloop.core.verdict): where the campaign started (round
    # 0's current best) and what it delivers (the latest current best).
    START = "starting"
    DELIVERED = "delivered"


# The kind of the round that asks the crowd the owner's question (delivered vs start); every
# other round's kind is the optimizer's, set by the render worker.
VERDICT_ROUND: Final = "verdict"


# -- what the optimizer is told --------------------------------------------------------------
class Feed(StrEnum):
    ORDER = "order"  # the consensus order
    PAIRWISE = "pairwise"  # its weighted pairwise matrix


# The same words as a Literal, for pydantic fields in strict mode (tests/test_status_words.py
# checks the two agree); plain words for click's choices and defaults, which refuse a member.
FeedName = Literal["order", "pairwise"]
FEEDS: Final[tuple[FeedName, ...]] = get_args(FeedName)
DEFAULT_FEED: Final[FeedName] = "pairwise"  # beat the order alone in `rankloop bench consensus`

# -- limits ----------------------------------------------------------------------------------
MIN_M: Final = 2
MAX_M: Final = 32  # candidates per round
DEFAULT_M: Final = 8
MAX_SIDE: Final = 2048  # pixels per image side
MAX_STEPS: Final = 200
MAX_GUIDANCE: Final = 50.0
SIDE_MULTIPLE: Final = 8  # latent sizes are image sizes / 8
MIN_SIDE: Final = 2 * SIDE_MULTIPLE

MAX_SEED: Final = 2**32 - 1
MAX_TEST_DELAY_S: Final = 600.0  # the render message's test hook: a pause, never a hang
MAX_PROMPT: Final = 2000  # characters of a prompt (and of a negative prompt)

# -- generators and their defaults -----------------------------------------------------------
# The generators' names, written once: the type of every generator field and the tuple below.
GeneratorName = Literal["cppn", "tiny-sd", "diffusers"]
GENERATORS: Final[tuple[GeneratorName, ...]] = get_args(GeneratorName)
DEFAULT_GENERATOR: Final[GeneratorName] = "cppn"

# Pixels of one round's candidates (m × width × height) per generator: a round holds one render
# worker, so one campaign must not hold it for minutes while other owners' rounds wait (m = 32
# at 2048² held a CPU worker for over a minute). Checked at create (422) and by the worker.
MAX_ROUND_PIXELS: Final[dict[GeneratorName, int]] = {
    "cppn": 8 * 1024 * 1024,  # CPU: m = 8 at 1024², m = 32 at 512²
    "tiny-sd": 32 * 256 * 256,  # the CPU stand-in of a diffusion model
    "diffusers": 16 * 1024 * 1024,  # one GPU batch: m = 16 at SDXL's 1024²
}


def check_round_size(
    generator: GeneratorName, m: int, width: int | None, height: int | None
) -> None:
    """Raise :class:`InvalidInput` when a round of ``m`` images of ``width`` × ``height`` is
    over ``generator``'s budget; an unknown size (a checkpoint's native one) passes here and is
    checked again by the worker, which knows it."""
    if width is None or height is None:
        return
    limit = MAX_ROUND_PIXELS[generator]
    if m * width * height > limit:
        raise InvalidInput(
            f"m × width × height = {m} × {width} × {height} is over the {generator} generator's "
            f"{limit:,} pixels per round: lower m or the size"
        )


# -- models --------------------------------------------------------------------------------
# The ``diffusers`` generator loads ``settings.model`` with ``from_pretrained``, which opens any
# local path or downloads any hub id: only the models an operator lists (``RANKLOOP_MODELS``,
# ``rankloop.core.settings.Settings.models``) may be named, checked by the coordinator at create,
# preview and fork (422) and again by the render worker. The built-in generators load nothing.
MODELS_VARIABLE: Final = "RANKLOOP_MODELS"


def model_refusal(generator: str, model: str | None, allowed: tuple[str, ...]) -> str | None:
    """Why ``generator`` may not render ``model`` here (a text naming the allowed models), or
    None. Only the listed strings pass, compared as given: nothing is looked up on disk or on
    the hub, so the answer never tells whether a path exists."""
    if generator != "diffusers":
        return None  # cppn and tiny-sd are built in: they ignore the model
    if model and model in allowed:
        return None
    offered = (
        f"the models offered are {', '.join(repr(m) for m in allowed)}"
        if allowed
        else "this server offers none (only the built-in generators cppn and tiny-sd)"
    )
    named = f"model {model!r} is" if model else "a diffusers campaign needs a model, and"
    return (
        f"{named} not on this server's model list ({MODELS_VARIABLE}, set by its operator): "
        f"{offered}"
    )


# -- leases ----------------------------------------------------------------------------------
# A task's lease when the owner sets no ``lease_s``: long enough for a careful worker on a phone
# to look at every image and rank, short enough that a page left alone hands its round on soon.
# Looking takes longer the more images there are and the more detail each holds (by side
# length, between half and twice a 512² image's time); picking takes longer the more picks.
LEASE_BASE_S: Final = 45.0  # read the prompt and the instructions, then send
LEASE_PER_IMAGE_S: Final = 8.0  # compare one 512² image with the others
LEASE_PER_PICK_S: Final = 3.0  # one tap or drag, with second thoughts
LEASE_SLACK: Final = 2.0  # the lease bounds an abandoned page, not the median worker
MIN_LEASE_S: Final = 10.0  # a task's lease an owner may set, at least (a page's round trip)
MAX_LEASE_S: Final = 24 * 3600  # a task's lease an owner may set, at most
MIN_DERIVED_LEASE_S: Final = 60.0
MAX_DERIVED_LEASE_S: Final = 1800.0
UNKNOWN_SIDE: Final = 1024  # a checkpoint's native size, unknown here: assume a large one
# The most a page's report of its images' loading time (POST /api/tasks/<id>/shown) may add to
# a lease: a slow phone connection takes seconds to tens of seconds for a round's images.
MAX_LOAD_CREDIT_S: Final = 120.0


def typical_ranking_s(
    m: int, k: int | None, width: int | None, height: int | None, attention_check: bool = True
) -> float:
    """Seconds a careful worker takes for one task of this shape: read, look at every image,
    pick (the stated default of an estimate before a deployment has measured its own)."""
    shown = m + (1 if attention_check else 0)  # the attention copy is looked at too
    picks = shown if k is None else min(k, shown)
    side = math.sqrt((width or UNKNOWN_SIDE) * (height or UNKNOWN_SIDE))
    detail = min(2.0, max(0.5, side / 512))
    return LEASE_BASE_S + shown * LEASE_PER_IMAGE_S * detail + picks * LEASE_PER_PICK_S


def default_lease_s(
    m: int, k: int | None, width: int | None, height: int | None, attention_check: bool = True
) -> float:
    """The lease, in seconds, of a campaign that sets none (a multiple of 10 s)."""
    seconds = LEASE_SLACK * typical_ranking_s(m, k, width, height, attention_check)
    seconds = 10.0 * math.ceil(seconds / 10.0)
    return min(MAX_DERIVED_LEASE_S, max(MIN_DERIVED_LEASE_S, seconds))


# What each generator renders with when a campaign leaves a field unset (None). A size of None
# for ``diffusers`` means the checkpoint's native size, which only the worker can read.
_GENERATOR_DEFAULTS: Final[dict[GeneratorName, dict[str, Any]]] = {
    "cppn": {"width": 256, "height": 256, "steps": None, "guidance": None, "scheduler": None},
    "tiny-sd": {"width": 64, "height": 64, "steps": 6, "guidance": 7.5, "scheduler": "ddim"},
    "diffusers": {"width": None, "height": None, "steps": 25, "guidance": 7.5, "scheduler": "ddim"},
}
# SD-Turbo / SDXL-Turbo: adversarially distilled, 1-4 steps, no guidance, non-ancestral Euler.
_TURBO_DEFAULTS: Final[dict[str, Any]] = {"steps": 2, "guidance": 0.0, "scheduler": "euler"}


def is_turbo(model: str | None) -> bool:
    """A turbo checkpoint (SD-Turbo, SDXL-Turbo), known by its id or folder name."""
    return "turbo" in str(model or "").lower()


def generator_defaults(generator: GeneratorName, model: str | None = None) -> dict[str, Any]:
    """The render settings ``generator`` (with ``model``) uses where a campaign sets none."""
    defaults = dict(_GENERATOR_DEFAULTS[generator])
    if generator == "diffusers" and is_turbo(model):
        defaults.update(_TURBO_DEFAULTS)
    return defaults


def with_generator_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with every unset (None or missing) render field filled from its generator's
    defaults; a value the owner set always wins."""
    out = dict(settings)
    generator = out.get("generator") or DEFAULT_GENERATOR
    out["generator"] = generator
    if generator not in _GENERATOR_DEFAULTS:  # a stored row from elsewhere: validation says so
        return out
    for field, value in generator_defaults(generator, out.get("model")).items():
        if out.get(field) is None:
            out[field] = value
    return out


# -- the render message and its result -------------------------------------------------------
# Models are forward compatible (extra fields ignored): a worker still running an older release
# accepts a message from a newer coordinator, and the other way round for results.
class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


_M = TypeVar("_M", bound=BaseModel)


# Text that a database can hold: PostgreSQL refuses NUL in text, so it is refused here, as the
# API's document says, instead of failing in the driver.
Text = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class RenderFields(BaseModel):
    """The render settings of a campaign with every bound, written once: the create request
    (``service.schemas.CampaignCreate``), the stored campaign settings
    (:mod:`rankloop.core.campaign_settings`) and the render message (:class:`RenderSettings`)
    all build on these fields. A render field left ``None`` takes the generator's default
    (:func:`with_generator_defaults`); a diffusers size left ``None`` is the checkpoint's native
    size, which only the worker can read."""

    negative_prompt: Text = Field(
        default="", max_length=MAX_PROMPT, description="what the images should not show"
    )
    generator: GeneratorName = Field(
        default=DEFAULT_GENERATOR,
        description="cppn (built in, CPU, no weights), tiny-sd (random-weight CPU stand-in) or "
        "diffusers (a real model: see model)",
    )
    model: Text | None = Field(
        default=None,
        max_length=300,
        description="diffusers only: a hub id or local folder on the operator's list "
        "(RANKLOOP_MODELS)",
    )
    m: Integer = Field(
        default=DEFAULT_M, ge=MIN_M, le=MAX_M, description="perturbed points per gradient round"
    )
    k: Integer | None = Field(
        default=None, ge=1, le=MAX_M, description="ranked items per task, at most m; null = full"
    )
    attention_check: bool = Field(
        default=True,
        description="show a degraded copy of the current best in every task (an honest "
        "annotator ranks it last)",
    )
    steps: Integer | None = Field(
        default=None, ge=1, le=MAX_STEPS, description="denoising steps; null: the generator's"
    )
    guidance: float | None = Field(
        default=None, ge=0, le=MAX_GUIDANCE, description="guidance scale; null: the generator's"
    )
    width: Integer | None = Field(
        default=None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=SIDE_MULTIPLE,
        description="image width in pixels; null: the generator's (a checkpoint's native size)",
    )
    height: Integer | None = Field(
        default=None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=SIDE_MULTIPLE,
        description="image height in pixels; null: the generator's (a checkpoint's native size)",
    )
    scheduler: Text | None = Field(
        default=None,
        max_length=64,
        description="diffusers: ddim, euler or default (the checkpoint's own, Euler when stochastic); null: the generator's",
    )
    seed: Integer = Field(
        default=0, ge=0, le=MAX_SEED, description="seed of the latent and the perturbations"
    )

    @model_validator(mode="after")
    def _k_fits(self) -> RenderFields:
        if self.k is not None and self.k > self.m:
            raise ValueError(f"k={self.k} exceeds m={self.m}: rank at most m images (or k=null)")
        return self


class RenderSettings(_Message, RenderFields):
    """The campaign settings a render worker needs (no database fields, no annotator rules),
    validated with every bound of :class:`RenderFields`: the worker relies on this model."""

    prompt: Text = Field(default="", max_length=MAX_PROMPT)
    optimizer: dict[str, Any] = Field(default_factory=dict)
    # The campaign's secret for image names (rankloop.core.storage.image_name); never shown to
    # annotators. Empty from a coordinator that predates it: names are then still digests.
    image_salt: str = ""
    # Test hook: a pause between a round's objects and its manifest, to kill a worker inside.
    test_delay_s: float = Field(default=0.0, ge=0.0, le=MAX_TEST_DELAY_S)


class ConsensusFeed(_Message):
    """What the optimizer is told about the previous round, in optimizer indices."""

    order: list[int] = Field(default_factory=list)  # best-first candidate indices
    pairwise: list[list[float]] | None = None  # weighted evidence W[a, b]: a beats b
    # How consistently the crowd ranked: Kendall's W of ``raters`` rankings (the optimizer's
    # visible floor follows it); absent from a round closed before it was sent.
    agreement: float | None = None
    raters: int | None = None


class RenderMessage(_Message):
    """The keyword arguments of the ``rankloop.render_round`` task."""

    campaign_id: str = Field(min_length=1)
    round_number: int = Field(ge=0)  # 0: the first round, no previous state
    settings: RenderSettings = Field(default_factory=RenderSettings)
    previous_state_key: str | None = None
    consensus: ConsensusFeed | None = None


class RenderedImage(_Message):
    index: int  # a candidate's index is the optimizer's index; the attention image comes last
    key: str
    thumb_key: str | None = None
    role: ImageRole = ImageRole.CANDIDATE  # the wire keeps the word (a StrEnum)


class BestImage(_Message):
    key: str
    thumb_key: str | None = None


class RenderResult(_Message):
    """What a render returns, and what its ``manifest.json`` holds."""

    campaign_id: str
    round_number: int
    kind: str | None = None
    state_key: str | None = None
    manifest_key: str | None = None
    render_seconds: float | None = None
    # torch's CPU thread count for a diffusion render (None when torch did not render): oneDNN
    # splits its sums by thread count, so a replay needs the same count for the same bytes.
    torch_threads: int | None = None
    images: list[RenderedImage]
    # The optimizer's current point rendered clean in the same batch (never shown to annotators).
    best: BestImage | None = None
    stats: dict[str, Any] = Field(default_factory=dict)


# The key of a render result's ``stats`` (kept in ``rounds.stats``) listing the round's move
# candidates, as image positions with the current point first (``RankSGD.move_items``): which
# decision the round's ranking feeds, read by the adaptive quorum (rankloop.core.settle).
MOVE_ITEMS: Final = "move_items"


def parse(model: type[_M], data: Any, what: str) -> _M:
    """``data`` as ``model``, or :class:`InvalidInput` that names the bad fields."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise InvalidInput(f"bad {what}: {problems}") from None


# -- render failures and liveness ------------------------------------------------------------
# A failed render's error reaches the coordinator as "<exception class name>: <message>". Only
# these classes fail a campaign (bad settings, an unknown model, a damaged object, a round too
# large for the machine): retrying cannot fix them. Every other failure (the object store or the
# broker down, an error whose class is unknown) leaves the round ``rendering``, to be sent again.
PERMANENT_RENDER_ERRORS: Final = (
    "InvalidInput",
    "ModelUnavailable",
    "CorruptedObject",
    "OutOfResources",
)


def render_error_is_permanent(error: str) -> bool:
    """Whether a render failure reported as ``"<class name>: <message>"`` is permanent."""
    return error.split(":", 1)[0].strip() in PERMANENT_RENDER_ERRORS


# A render worker writes a heartbeat object (JSON ``{"at": <unix time>, "worker": ...}``) when it
# starts a round's render and every HEARTBEAT_EVERY_S while it runs; the coordinator's sweep
# treats a render whose heartbeat is older than the setting render_stale_after_s (at least
# three beats) as lost and sends it again.
# Outside the round's prefix: a round's objects are exactly its images, state and manifest.
HEARTBEAT_EVERY_S: Final = 2.0


def heartbeat_key(campaign_id: str, round_number: int) -> str:
    """The object store key of a round's render heartbeat."""
    return f"heartbeats/{campaign_id}/{round_number:04d}.json"
