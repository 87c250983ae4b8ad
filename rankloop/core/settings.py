"""The ``RANKLOOP_*`` settings, read in one place by every process.

Each setting is a field of :class:`Settings`; its environment variable is the field's name in
upper case after ``RANKLOOP_`` (``database_url``: ``RANKLOOP_DATABASE_URL``). The coordinator's
app factory, its bookkeeping worker and beat, the render workers, ``rankloop db`` and
``rankloop up`` all call :func:`load_settings`, so a value means the same everywhere
(``RANKLOOP_S3_CREATE_BUCKET=false`` is false in every tier) and every default is written once,
here. The embedded default keeps the database, the object store and the broker under
``var_dir``: processes started by hand on one machine, with no setting at all, meet.

:func:`broker_settings` is the broker half of both Celery configurations (plain data: Celery
setting names), so the coordinator sends where the render workers listen, under the same key
prefix and with the same delivery guarantees.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rankloop.core.errors import InvalidInput

ENV_PREFIX = "RANKLOOP_"
BROKER_FILE = "broker.sqlite"  # the embedded broker, under var_dir
# Where an app (the coordinator's Flask app) keeps its one Settings object: see settings_of.
SETTINGS_EXTENSION = "rankloop_settings"

# Optional strings where an empty value (``RANKLOOP_RESULT_BACKEND=``) means "not set".
_OPTIONAL = (
    "s3_endpoint_url",
    "s3_access_key",
    "s3_secret_key",
    "s3_public_endpoint_url",
    "result_backend",
    "mturk_test_origin",
    "admin_token",
    "base_url",
    "stream_url",
    "device",
)


# Which processes read a setting (json_schema_extra "read_by"): the reference lists it.
ALL: Final[JsonDict] = {"read_by": "all processes"}
COORDINATOR: Final[JsonDict] = {"read_by": "web, bookkeeping workers, beat"}
WEB: Final[JsonDict] = {"read_by": "web"}
RENDER: Final[JsonDict] = {"read_by": "render workers"}
WEB_AND_RENDER: Final[JsonDict] = {"read_by": "web, render workers"}
STREAMS: Final[JsonDict] = {"read_by": "stream process"}


class Settings(BaseSettings):
    """Every ``RANKLOOP_*`` setting of the coordinator and the render workers, typed.

    A setting left empty among ``database_url``, ``store_url``, ``broker_url`` and
    ``inductor_cache`` means the embedded default under ``var_dir``. Every field has a
    description and says which processes read it: the documentation's settings reference is
    generated from them (``rankloop.commands.reference``).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    var_dir: Path = Field(
        default=Path("var"),
        description="where the embedded defaults live: SQLite database, local object store, "
        "broker file, compile cache",
        json_schema_extra=ALL,
    )

    # -- database (coordinator only) ---------------------------------------------------------
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the database, e.g. "
        "postgresql+psycopg://rankloop:PASSWORD@host:5432/rankloop; empty: SQLite in "
        "var_dir/rankloop.sqlite",
        json_schema_extra=COORDINATOR,
    )
    # Bounded so that a typo cannot open thousands of connections per process.
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="connections each process keeps open",
        json_schema_extra=COORDINATOR,
    )
    database_max_overflow: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="connections a process may open beyond the pool under load",
        json_schema_extra=COORDINATOR,
    )
    # Off: a ping is one more round trip per request; a connection that died in the pool
    # fails its first statement instead and the request answers 503 (service.errors).
    database_pre_ping: bool = Field(
        default=False,
        description="test each pooled connection before use (the bookkeeping workers always "
        "do; the web tier need not: a dead connection answers 503 with Retry-After)",
        json_schema_extra=COORDINATOR,
    )

    # -- object store (both tiers) -------------------------------------------------------------
    store_url: str = Field(
        default="",
        description="s3://bucket, or a local folder; empty: var_dir/objects",
        json_schema_extra=ALL,
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="the S3 endpoint the processes reach (SeaweedFS, MinIO); unset: AWS",
        json_schema_extra=ALL,
    )
    s3_access_key: str | None = Field(
        default=None, description="S3 access key id", json_schema_extra=ALL
    )
    s3_secret_key: str | None = Field(
        default=None, description="S3 secret access key", json_schema_extra=ALL
    )
    s3_region: str = Field(default="us-east-1", description="S3 region", json_schema_extra=ALL)
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="the S3 endpoint browsers fetch images from, when it differs from "
        "RANKLOOP_S3_ENDPOINT_URL (presigned URLs and the pages' CSP use it)",
        json_schema_extra=WEB,
    )
    s3_create_bucket: bool = Field(
        default=False,
        description="create the bucket at start when missing (SeaweedFS, MinIO); on AWS "
        "create it yourself and leave false",
        json_schema_extra=ALL,
    )
    # boto's own tries of one store request. "standard": a few quick tries (50 ms-scale backoff
    # for a refused connection). "adaptive" adds a client-side rate limiter that, once it sees
    # throttling answers (503 SlowDown), slows every later request of the process: a render
    # meeting a store that is just back could crawl.
    s3_retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard",
        description="boto's retry mode for store requests (adaptive slows every later request "
        "of a process once it sees throttling)",
        json_schema_extra=ALL,
    )
    s3_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="tries of one store request in all, the first included",
        json_schema_extra=ALL,
    )
    # A store host that does not answer (not even "refused") fails a request after this, so a
    # render's own retries and the heartbeats go on instead of hanging for boto's 60 s.
    s3_connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="seconds to connect to the store before a request fails (boto's own: 60)",
        json_schema_extra=ALL,
    )
    s3_read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds to wait for the store's answer to a request",
        json_schema_extra=ALL,
    )

    # -- broker (both tiers: see broker_settings) ----------------------------------------------
    broker_url: str = Field(
        default="",
        description="Celery broker: redis://host:6379/0 or amqp://user:pass@host:5672/vhost, "
        "the same in every process; empty: kombu's SQLAlchemy transport on "
        "var_dir/broker.sqlite",
        json_schema_extra=ALL,
    )
    broker_transport_options: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description='JSON object, e.g. {"visibility_timeout": 3600, "global_keyprefix": '
        '"prod:"}; global_keyprefix must be the same in every process, and with Redis '
        "visibility_timeout must exceed the longest round",
        json_schema_extra=ALL,
    )
    result_backend: str | None = Field(
        default=None,
        description="optional Celery result backend: with it a failed render's exception "
        'shows on the round instead of "see the worker\'s log"',
        json_schema_extra=ALL,
    )

    # -- web tier ------------------------------------------------------------------------------
    admin_token: str | None = Field(
        default=None,
        description="the owner key of the admin (rankloop up generates one when unset; more "
        "keys: rankloop db create-owner-key)",
        json_schema_extra=WEB,
    )
    base_url: str | None = Field(
        default=None,
        description="the public URL in the links the API gives out; unset: the request's host",
        json_schema_extra=WEB,
    )
    # At least a minute (a page must load its images), at most S3's own limit (7 days).
    presign_expires_s: int = Field(
        default=3600,
        ge=60,
        le=7 * 24 * 3600,
        description="seconds a presigned S3 image URL stays valid",
        json_schema_extra=COORDINATOR,
    )
    inline_bookkeeping: bool = Field(
        default=True,
        description="close a round in the request that brought its quorum (else a "
        "bookkeeping worker closes it)",
        json_schema_extra=WEB,
    )
    # Renders one owner key (the admin token counts as one owner) may have on the render queue
    # at once; the rest wait in the database and the sweep sends them as slots free, so one
    # owner's many campaigns cannot queue every other owner's rounds behind them. 0: no cap.
    render_slots_per_owner: int = Field(
        default=2,
        ge=0,
        le=1000,
        description="renders (rounds and previews) one owner key may have on the render queue "
        "at once; the rest wait in the database; 0: no cap",
        json_schema_extra=COORDINATOR,
    )
    # A render sent this long ago that no worker holds (no heartbeat) and that the broker no
    # longer holds either (Redis: not on the render queue, not unacknowledged; a Redis restart
    # without persistence loses its queue) is sent again by the sweep, well before its
    # render_timeout_s. Never while it waits in the queue, however long (service/sweep.py).
    # 10 s: a render lost with a Redis restart without persistence is rendered again about 12 s
    # after the restart (34 s with 30 s); the broker is read only for renders this old. A render
    # never sent (its sender died between its round's commit and the send, or the broker was
    # down) is sent this long after its round was made, on any broker.
    render_lost_after_s: float = Field(
        default=10.0,
        ge=5,
        le=3600,
        allow_inf_nan=False,
        description="seconds after which the sweep sends a render that was never sent, or sends "
        "again one that no worker beats for and Redis no longer holds (Redis only)",
        json_schema_extra=COORDINATOR,
    )
    # A render whose worker's heartbeat (rewritten every contracts.HEARTBEAT_EVERY_S, 2 s) is
    # older than this is taken for lost (its worker was killed, or its result was lost) and sent
    # again by the sweep (every 2 s). At least three beats: a slow store write is no death. With
    # 15 s a render worker's kill -9 left annotators without work for 20 s; with 6 s, about 10.
    render_stale_after_s: float = Field(
        default=6.0,
        ge=6,
        le=3600,
        allow_inf_nan=False,
        description="seconds without a render's heartbeat (a worker beats every 2 s) after which "
        "the sweep sends it again: its worker was killed",
        json_schema_extra=COORDINATOR,
    )
    # What the console's estimate of a campaign's cost pays an annotator per hour of work
    # (in the owner's currency: Prolific asks for at least about 9 GBP).
    pay_per_hour: float = Field(
        default=12.0,
        ge=0,
        le=10_000,
        allow_inf_nan=False,
        description="what the console's cost estimate pays an annotator per hour of work, in "
        "the owner's currency",
        json_schema_extra=WEB,
    )
    ratelimit_enabled: bool = Field(
        default=True, description="apply the rate limits below", json_schema_extra=WEB
    )
    ratelimit_storage_uri: str = Field(
        default="memory://",
        description="where shared counters live (redis://...); memory://: per process",
        json_schema_extra=WEB,
    )
    ratelimit_key_prefix: str = Field(
        default="", description="prefix of the counters' keys in the storage", json_schema_extra=WEB
    )
    ratelimit_annotator: str = Field(
        default="1200 per minute",
        description="requests per annotator token",
        json_schema_extra=WEB,
    )
    ratelimit_join: str = Field(
        default="60 per minute",
        description="recruitment-link (/join) requests per client address, always counted in "
        "RANKLOOP_RATELIMIT_STORAGE_URI (per process only with memory://)",
        json_schema_extra=WEB,
    )
    # Owner endpoints, per owner key (a dashboard polls every 10 s: far below this).
    ratelimit_owner: str = Field(
        default="600 per minute", description="requests per owner key", json_schema_extra=WEB
    )
    # Preview renders, per owner key, on top of that: each also takes one of the owner's render
    # slots while it renders (service/api/previews.py), so this bounds the requests only.
    ratelimit_preview: str = Field(
        default="10 per minute",
        description="preview renders per owner key, on top of the owner limit",
        json_schema_extra=WEB,
    )
    # Requests with an unknown or malformed token, per client address: token guessing stops.
    ratelimit_auth_failures: str = Field(
        default="30 per minute",
        description="requests with an unknown or malformed token per client address; past it "
        "they answer 429 instead of 401 (valid credentials are never refused)",
        json_schema_extra=WEB,
    )
    # Reverse proxies in front of the coordinator that set X-Forwarded-For/-Proto/-Host/-Prefix
    # (Werkzeug's ProxyFix): the client address the limits count is then the proxies' client's.
    # 0 (no proxy) trusts no such header: a client could set it.
    proxy_count: int = Field(
        default=0,
        ge=0,
        le=10,
        description="reverse proxies in front of the web tier whose X-Forwarded-* headers are "
        "trusted (client address, scheme, host, prefix); 0: none (a client could forge them)",
        json_schema_extra=WEB,
    )
    # "process": per process, no round trip; "shared": exact across processes, in the storage.
    ratelimit_annotator_scope: Literal["process", "shared"] = Field(
        default="process",
        description="process: annotator limits counted per process (no round trip; W "
        "processes allow W times the limit); shared: exact, in RANKLOOP_RATELIMIT_STORAGE_URI",
        json_schema_extra=WEB,
    )
    max_content_length: int = Field(
        default=1 << 20,
        ge=1024,
        le=1 << 30,
        description="largest request body in bytes",
        json_schema_extra=WEB,
    )
    docs_url: str = Field(
        default="",
        description="where the landing page (/) links the documentation site, if it is "
        "published (e.g. the site `mkdocs build` makes, served by the proxy); empty: the "
        "landing page says how to build it from a checkout",
        json_schema_extra=WEB,
    )
    ui_image_origins: str = Field(
        default="",
        description="space-separated origins the pages may load images from (a CDN)",
        json_schema_extra=WEB,
    )
    # "json": one JSON object per log line with request, campaign and round ids (service.logs);
    # "text" (the default, and what `rankloop up` prints) keeps plain lines.
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one object per line with request_id, campaign_id, round (gunicorn's "
        "and the render workers' lines too); text: plain lines",
        json_schema_extra=ALL,
    )
    # A live page's stream ends after this many seconds and the page opens a new one (under
    # gunicorn's 30 s sync timeout); tests that read whole streams shorten it.
    stream_lifetime_s: float = Field(
        default=25.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds a server-sent event stream lasts before the page opens another "
        "(keep it under gunicorn's worker timeout)",
        json_schema_extra=WEB,
    )
    # The stream process (rankloop streams, service.push): where pages reach it, how long its
    # streams last (no gunicorn timeout there; each renewal is a ticket from the web tier), and
    # how often it reads every watched state anyway (ranking counts, a lost notification).
    stream_url: str | None = Field(
        default=None,
        description="the stream process's origin as pages reach it (e.g. http://host:8001); "
        "unset: the stream routes on the web tier's own address (a proxy routes them to the "
        "stream process, or the web tier serves them itself, polling)",
        json_schema_extra=WEB,
    )
    push_stream_lifetime_s: float = Field(
        default=300.0,
        ge=0,
        le=24 * 3600,
        allow_inf_nan=False,
        description="seconds a stream of the stream process lasts before the page opens another",
        json_schema_extra=STREAMS,
    )
    push_sweep_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds between the stream process's reads of every watched state "
        "(ranking counts, revoked credentials, a notification lost while reconnecting)",
        json_schema_extra=STREAMS,
    )
    web_stream_slots: int = Field(
        default=2,
        ge=0,
        le=1000,
        description="streams each web process serves itself, polling (each holds a worker "
        "thread); past that it answers 503 and pages poll. The stream process has no such cap",
        json_schema_extra=WEB,
    )
    # A test's stand-in for MTurk (an http://localhost server), allowed to frame the pages and
    # receive the task page's form only while the app is testing (Flask's TESTING): production
    # stays restricted to MTurk's origins (rankloop.core.mturk) whatever this says.
    mturk_test_origin: str | None = Field(
        default=None,
        description="tests only: a stand-in for MTurk's origin, honoured only while the app is "
        "testing",
        json_schema_extra=WEB,
    )

    # -- models (both tiers) -------------------------------------------------------------------
    # The diffusers models (hub ids and local folders, as campaigns name them) that campaigns and
    # previews may use, comma- or space-separated: the coordinator refuses any other at create,
    # preview and fork, and the render worker refuses to load it. Empty: only the built-in
    # generators (cppn, tiny-sd). Give the coordinator and the workers the same list.
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="the diffusers models (hub ids, local folders, as written) campaigns may "
        "name, comma- or space-separated; empty: only cppn and tiny-sd; the same list on the "
        "coordinator and the render workers",
        json_schema_extra=WEB_AND_RENDER,
    )

    # -- render worker -------------------------------------------------------------------------
    device: str | None = Field(
        default=None,
        description="torch device of a render worker (cuda, cuda:1, cpu); unset: CUDA when "
        "present, else the CPU",
        json_schema_extra=RENDER,
    )
    compile_mode: str = Field(
        default="default",
        description="torch.compile mode of the optimised CUDA path",
        json_schema_extra=RENDER,
    )
    compile_tuning: bool = Field(
        default=False,
        description="coordinate-descent tuning of Triton kernels (slower compile)",
        json_schema_extra=RENDER,
    )
    inductor_cache: str = Field(
        default="",
        description="where compiled kernels are kept across restarts; empty: "
        "var_dir/inductor-cache",
        json_schema_extra=RENDER,
    )
    # JSON settings object rendered once at worker start (pays the model load and compile).
    warmup: Annotated[dict[str, Any] | None, NoDecode] = Field(
        default=None,
        description='JSON campaign settings rendered once at worker start, e.g. {"generator": '
        '"diffusers", "model": "...", "m": 8}: the model load and compile are paid before the '
        "first round",
        json_schema_extra=RENDER,
    )
    # A render that meets an object store error tries again after 1, 2, then every
    # store_retry_every_s seconds (so it goes on within that of the store's return; it was 15 s),
    # until store_outage_budget_s have passed; then it is recorded as failed, the round stays
    # rendering and the coordinator's sweep sends it again once the store answers.
    store_retry_every_s: float = Field(
        default=3.0,
        ge=0.5,
        le=300,
        allow_inf_nan=False,
        description="seconds between a render's tries while the object store fails (after 1 s "
        "and 2 s)",
        json_schema_extra=RENDER,
    )
    store_outage_budget_s: float = Field(
        default=210.0,
        ge=1,
        le=86400,
        allow_inf_nan=False,
        description="seconds a render keeps trying through a store outage before it is "
        "recorded as failed (the sweep sends it again once the store answers)",
        json_schema_extra=RENDER,
    )

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("broker_transport_options", mode="before")
    @classmethod
    def _transport_options(cls, value: Any) -> Any:
        return _json_object(value) or {}

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name for name in re.split(r"[,\s]+", value) if name)
        return value

    @field_validator("warmup", mode="before")
    @classmethod
    def _warmup(cls, value: Any) -> Any:
        return _json_object(value)

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        var = Path(self.var_dir).resolve()
        self.var_dir = var
        self.database_url = self.database_url or f"sqlite:///{var / 'rankloop.sqlite'}"
        self.store_url = self.store_url or str(var / "objects")
        self.broker_url = self.broker_url or f"sqla+sqlite:///{var / BROKER_FILE}"
        self.inductor_cache = self.inductor_cache or str(var / "inductor-cache")
        return self


class _HasExtensions(Protocol):
    extensions: dict[str, Any]


def settings_of(app: _HasExtensions) -> Settings:
    """The one :class:`Settings` object of an app (the coordinator's ``create_app`` keeps it in
    ``app.extensions``); every tier reads its settings as fields of this, never by key."""
    settings = app.extensions[SETTINGS_EXTENSION]
    if not isinstance(settings, Settings):
        raise TypeError(f"app.extensions[{SETTINGS_EXTENSION!r}] is no Settings: {settings!r}")
    return settings


def _json_object(value: Any) -> Any:
    """A JSON object given as text (from the environment) decoded; anything else as is."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        decoded = json.loads(value)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(decoded, dict):
        raise ValueError("must be a JSON object")
    return decoded


def env_name(field: str) -> str:
    """The environment variable of a setting: ``store_url`` -> ``RANKLOOP_STORE_URL``."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """The settings from ``RANKLOOP_*`` variables, then ``overrides``.

    Parameters
    ----------
    environ : mapping or None
        The variables to read; ``None`` reads the process environment. Pass ``{}`` to read
        none (settings from ``overrides`` and the defaults only).
    overrides : mapping or None
        Values by upper-case name without the prefix (``{"BROKER_URL": "memory://"}``), as in
        a Flask config; names that are no setting are ignored.

    Raises
    ------
    InvalidInput
        A value of the wrong type (``RANKLOOP_PRESIGN_EXPIRES_S=soon``), naming the variable.
    """
    fields = Settings.model_fields
    values: dict[str, Any] = {}
    if environ is not None:
        # Every field from ``environ`` or its default, so that os.environ is never consulted.
        for name, field in fields.items():
            variable = env_name(name)
            if variable in environ:
                values[name] = environ[variable]
            else:
                values[name] = field.get_default(call_default_factory=True)
    for key, value in (overrides or {}).items():
        if key.lower() in fields:
            values[key.lower()] = value
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{env_name(str(e['loc'][0])) if e['loc'] else 'settings'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        raise InvalidInput(f"bad settings: {problems}") from None


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")  # RabbitMQ (kombu's py-amqp transport)
REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")  # kombu's Redis transport


def broker_is_redis(url: str) -> bool:
    """Whether a broker URL names Redis (then its queues can be read as Redis lists)."""
    return urlsplit(url).scheme in REDIS_SCHEMES


QUORUM_QUEUES: dict[str, Any] = {
    "task_default_queue_type": "quorum",
    "task_default_exchange_type": "topic",
    "task_create_missing_queue_type": "quorum",
    "task_create_missing_queue_exchange_type": "topic",
}


def broker_settings(settings: Settings) -> dict[str, Any]:
    """The Celery settings the coordinator and the render workers must share.

    The broker and its transport options (``global_keyprefix`` decides which Redis keys a
    queue lives in: a coordinator and a worker with different prefixes never meet), the result
    backend under the same prefix, JSON messages, and at-least-once delivery: a task is
    acknowledged only when done and goes back to the queue when its worker dies (every task is
    idempotent), and a worker holds no task it is not running.

    On RabbitMQ (``amqp://``) the task queues (``coord``, ``gpu``: the default queue and those
    made on first use) are declared as quorum queues: durable, their messages persistent and
    replicated over a cluster's nodes, so a queued render survives a broker restart (and, on a
    cluster, the loss of a node).
    Their exchanges are topic exchanges, so a retry's countdown waits in RabbitMQ's delayed
    delivery exchanges (which Celery's workers declare) instead of in a worker. A queue that
    already exists as a classic queue is refused (``PRECONDITION_FAILED``): see docs/guides/deploy.md, Broker.
    """
    transport = dict(settings.broker_transport_options)
    return {
        **(QUORUM_QUEUES if urlsplit(settings.broker_url).scheme in AMQP_SCHEMES else {}),
        "broker_url": settings.broker_url,
        # (kombu's SQLAlchemy transport hands these options to create_engine.)
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "result_backend": settings.result_backend,
        "result_backend_transport_options": {
            k: v for k, v in transport.items() if k in ("global_keyprefix", "retry_policy")
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
    }


def make_local_dirs(settings: Settings) -> None:
    """Create the folder of an SQLite broker file (kombu does not), e.g. ``var/``."""
    url = settings.broker_url
    if url.startswith("sqla+sqlite:///"):
        path = url.removeprefix("sqla+sqlite:///")
        if path and path != ":memory:":
            os.makedirs(Path(path).parent, exist_ok=True)


__all__ = [
    "BROKER_FILE",
    "ENV_PREFIX",
    "SETTINGS_EXTENSION",
    "Settings",
    "broker_settings",
    "env_name",
    "load_settings",
    "make_local_dirs",
    "settings_of",
]
