"""A campaign's render settings: what the owner leaves unset is resolved once, by the rules in
``rankloop.core.contracts``, and the render worker receives and uses exactly that.

Campaigns are created through the HTTP API and started; the render message is read from the
coordinator's broker (``memory://`` in tests: the message as it was sent) and handed to the
worker's own code.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from flask import Flask
from PIL import Image

from gpu_worker.generators import load_generator, resolve_settings
from gpu_worker.render import render_round
from rankloop.core.campaign_settings import CampaignFields, CampaignSettings, lease_of
from rankloop.core.contracts import (
    _GENERATOR_DEFAULTS,
    GENERATORS,
    GPU_QUEUE,
    MAX_ROUND_PIXELS,
    RENDER_TASK,
    RenderSettings,
    default_lease_s,
    generator_defaults,
)
from rankloop.core.errors import InvalidInput
from rankloop.core.settings import settings_of
from rankloop.core.storage import LocalStore
from service import db
from service.models import Campaign
from service.render_messages import IMAGE_SALT, render_settings
from service.schemas import CampaignCreate

TURBO = "stabilityai/sd-turbo"


def sent_renders(app: Flask, campaign_id: str) -> list[dict[str, Any]]:
    """The render messages the coordinator put on the ``gpu`` queue for ``campaign_id``."""
    found = []
    with app.extensions["celery"].connection_for_read() as connection:
        queue = connection.SimpleQueue(GPU_QUEUE)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                message.ack()
                _args, kwargs, _embed = message.decode()
                if message.headers["task"] == RENDER_TASK and kwargs["campaign_id"] == campaign_id:
                    found.append(kwargs)
        finally:
            queue.close()
    return found


def started_campaign(owner, **settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create and start a campaign over HTTP; its stored settings and the render message. A
    diffusers model is put on the app's model list (RANKLOOP_MODELS) first."""
    if settings.get("model"):
        app_settings = settings_of(owner.client.application)
        app_settings.models = (*app_settings.models, settings["model"])
    campaign = owner.campaign(start=True, **settings)
    (message,) = sent_renders(owner.client.application, campaign["id"])
    return campaign["settings"], message


@pytest.fixture(scope="module")
def tiny():
    import torch

    torch.set_num_threads(1)  # two cores shared by the whole test run
    return load_generator(RenderSettings(generator="tiny-sd"))


def test_tiny_sd_campaign_renders_tiny_sd_defaults(owner, tiny, tmp_path):
    stored, message = started_campaign(owner, generator="tiny-sd")
    expected = generator_defaults("tiny-sd")  # 64x64, 6 DDIM steps, guidance 7.5
    sent = message["settings"]
    for field, value in expected.items():
        assert stored[field] == value, field
        assert sent[field] == value, field
    # The worker's own resolution keeps them, and the images come out at that size.
    resolved = resolve_settings(sent, tiny)
    assert {f: getattr(resolved, f) for f in expected} == expected
    store = LocalStore(tmp_path / "worker-objects")
    result = render_round(store, message["campaign_id"], 0, sent)
    with Image.open(io.BytesIO(store.get(result["images"][0]["key"]))) as image:
        assert image.size == (expected["width"], expected["height"])


def test_a_value_the_owner_sets_wins(owner, tiny):
    stored, message = started_campaign(
        owner, generator="tiny-sd", steps=10, guidance=3.0, width=48, scheduler="euler"
    )
    owned = {"steps": 10, "guidance": 3.0, "width": 48, "scheduler": "euler"}
    resolved = resolve_settings(message["settings"], tiny).model_dump()
    for settings in (stored, message["settings"], resolved):
        assert {f: settings[f] for f in owned} == owned
        assert settings["height"] == generator_defaults("tiny-sd")["height"]  # left unset


def test_turbo_campaign_renders_turbo_defaults(owner, tiny):
    stored, message = started_campaign(owner, generator="diffusers", model=TURBO)
    turbo = {"steps": 2, "guidance": 0.0, "scheduler": "euler"}
    for settings in (stored, message["settings"]):
        assert {f: settings[f] for f in turbo} == turbo
        # The size stays the checkpoint's native one, which only the worker can read.
        assert settings["width"] is None and settings["height"] is None

    # The worker's diffusers generator for that model: the tiny pipeline stands in for the
    # checkpoint (no weights here); its defaults are built as load_pretrained builds them.
    from gpu_worker.generators.diffusion import DiffusionGenerator, pretrained_defaults

    loaded = DiffusionGenerator(
        tiny.pipe, name="diffusers", defaults=pretrained_defaults(TURBO, tiny.pipe), device="cpu"
    )
    resolved = resolve_settings(message["settings"], loaded)
    native = int(tiny.pipe.unet.config.sample_size) * int(tiny.pipe.vae_scale_factor)
    assert {f: getattr(resolved, f) for f in turbo} == turbo
    assert (resolved.width, resolved.height) == (native, native)


def test_non_turbo_diffusers_campaign_gets_ddim_defaults(owner):
    stored, message = started_campaign(owner, generator="diffusers", model="sd-legacy/sd-1.5")
    for settings in (stored, message["settings"]):
        assert (settings["steps"], settings["guidance"], settings["scheduler"]) == (25, 7.5, "ddim")


def test_cppn_campaign_has_no_diffusion_settings(owner):
    stored, message = started_campaign(owner)
    for settings in (stored, message["settings"]):
        assert (settings["width"], settings["height"]) == (256, 256)
        assert settings["steps"] is None and settings["guidance"] is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"m": 33}, "m: Input should be less than or equal to 32"),
        ({"m": "8"}, "m: Input should be a valid integer"),
        ({"k": 9, "m": 8}, "k=9 exceeds m=8: rank at most m images (or k=null)"),
        ({"width": 100}, "width: Input should be a multiple of 8"),
        ({"seed": 2**32}, "seed: Input should be less than or equal to 4294967295"),
        ({"generator": "dall-e"}, "generator: Input should be 'cppn', 'tiny-sd' or 'diffusers'"),
        ({"recruit_cap": -1}, "recruit_cap: Input should be greater than or equal to 0"),
        ({"annotators_per_round": 1001}, "annotators_per_round: Input should be less than or"),
        ({"lease_s": 0}, "lease_s: Input should be greater than or equal to 10"),
        ({"render_timeout_s": 86401}, "render_timeout_s: Input should be less than or equal"),
        ({"consensus_feed": "votes"}, "consensus_feed: Input should be 'order' or 'pairwise'"),
        ({"consensus_method": "vibes"}, "consensus_method: Input should be 'auto'"),
        ({"negative_prompt": "a\x00b"}, "negative_prompt: String should match pattern"),
        ({"image_salt": "mine"}, "image_salt: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_a_422_that_names_the_bound(owner, body, message):
    response = owner.post("/api/campaigns", json={"prompt": "x", **body})
    assert response.status_code == 422, response.json
    assert message in response.json["error"]["message"]


@pytest.mark.parametrize(
    "name", ["m", "k", "width", "height", "steps", "guidance", "seed", "scheduler", "model"]
)
def test_create_stored_and_render_settings_share_each_bound(name):
    """The create request, the stored settings and the render message are one set of fields:
    each bound is written once (RenderFields, CampaignFields)."""
    create = CampaignCreate.model_fields[name]
    for model in (CampaignSettings, RenderSettings):
        field = model.model_fields[name]
        assert (field.annotation, field.metadata) == (create.annotation, create.metadata), model
        assert field.get_default() == create.get_default()


def test_create_and_stored_settings_share_each_campaign_field():
    shared = set(CampaignFields.model_fields) - {"lease_s"}  # resolved when stored
    for name in shared:
        create, stored = CampaignCreate.model_fields[name], CampaignSettings.model_fields[name]
        assert (create.metadata, create.get_default()) == (stored.metadata, stored.get_default())


def test_a_stored_row_missing_keys_loads_with_the_model_defaults():
    """A campaign stored by an older release: the keys it lacks take their defaults (one place:
    CampaignFields), its render fields the generator's, its lease the derived one; keys this
    release does not know are ignored (and stay in the stored JSON)."""
    stored = {"m": 4, "rounds": 3, "optimizer": {}, "from_the_future": 1}
    campaign = Campaign(name="old", prompt="x", settings=stored)
    config = campaign.config
    assert config.recruit_cap == 100  # was 0 in /join, 100 at create
    assert config.render_timeout_s == 900.0 and config.round_deadline_s == 600.0
    assert (config.annotators_per_round, config.tasks_per_annotator) == (3, 10)
    assert (config.recruit, config.allow_ties, config.attention_check) == (False, False, True)
    assert config.consensus_method == "auto"
    assert config.consensus_feed == "order"  # older than the setting: it was told the order
    assert (config.width, config.height) == (256, 256)  # the cppn defaults
    assert config.lease_s == default_lease_s(4, None, 256, 256, True)
    assert config.image_salt == ""
    assert not hasattr(config, "from_the_future")
    assert campaign.settings["from_the_future"] == 1
    # What a campaign created now stores loads as itself.
    created = CampaignCreate(prompt="x", m=4, recruit_cap=7).settings()
    assert CampaignSettings.from_stored(created).model_dump(
        exclude={"image_salt", "test_delay_s"}
    ) == {
        **created,
        "completion_code": None,
    }


@pytest.mark.parametrize(
    "body",
    [
        {"m": 4},
        {"m": 8, "k": 4, "attention_check": False},
        {"generator": "tiny-sd", "m": 6},
        {"m": 5, "width": 128, "height": 96},
        {"m": 4, "lease_s": 123.5},
    ],
)
def test_a_created_campaign_stores_the_lease_the_model_derives(owner, body):
    """The lease is derived once (campaign_settings.lease_of): what a created campaign stores is
    what the stored settings' model derives from the same settings without it, and an owner's
    lease wins."""
    campaign_id = owner.campaign(**body)["id"]
    with owner.client.application.app_context(), db.session_scope() as session:
        row = session.get(Campaign, campaign_id)
        assert row is not None
        stored = dict(row.settings)
    unset = {name: value for name, value in stored.items() if name != "lease_s"}
    derived = CampaignSettings.from_stored(unset).lease_s
    assert stored["lease_s"] == body.get("lease_s", derived)
    if "lease_s" not in body:
        assert (
            stored["lease_s"]
            == lease_of(unset)
            == default_lease_s(
                stored["m"],
                stored["k"],
                stored["width"],
                stored["height"],
                stored["attention_check"],
            )
        )


def test_campaign_config_is_parsed_once_and_again_after_the_settings_change():
    campaign = Campaign(name="c", prompt="x", settings=CampaignCreate(prompt="x").settings())
    assert campaign.config is campaign.config
    campaign.settings = {**campaign.settings, "image_salt": "s3cret"}
    assert campaign.config.image_salt == "s3cret"


def test_a_stored_value_the_model_refuses_is_kept_as_stored(caplog):
    """``rankloop bench api`` stores a quorum beyond the API's cap, and a row stored before a
    choice was checked may hold an unknown one: loading keeps them (and logs), so the row fails
    only where the value is used (test_hostile_input: the close fails and is recorded)."""
    stored = {**CampaignCreate(prompt="x").settings(), "annotators_per_round": 10**9}
    assert CampaignSettings.from_stored(stored).annotators_per_round == 10**9
    odd = CampaignSettings.from_stored({**stored, "consensus_method": "no-such"})
    assert odd.consensus_method == "no-such" and odd.annotators_per_round == 10**9
    assert "kept as stored" in caplog.text


# Absurd durations and counts (the lease and deadline of 1e-300 s among them).
ABSURD = [
    ("lease_s", 1e-300, "greater than or equal to 10"),
    ("lease_s", 10 * 86400, "less than or equal to 86400"),
    ("round_deadline_s", 1e-300, "greater than or equal to 30"),
    ("round_deadline_s", 1e9, "less than or equal to 604800"),
    ("render_timeout_s", 1e-300, "greater than or equal to 60"),
    ("render_timeout_s", 1e9, "less than or equal to 86400"),
    ("tasks_per_annotator", 0, "greater than or equal to 1"),
    ("tasks_per_annotator", 10**12, "less than or equal to 100000"),
    ("recruit_cap", 10**12, "less than or equal to 100000"),
    ("rounds", 0, "greater than or equal to 1"),
    ("rounds", 10**9, "less than or equal to 10000"),
    ("annotators_per_round", 0, "greater than or equal to 1"),
]


@pytest.mark.parametrize(("name", "value", "bound"), ABSURD)
def test_an_absurd_duration_or_count_is_refused_at_create_naming_the_field(
    owner, name, value, bound
):
    response = owner.post("/api/campaigns", json={"prompt": "x", name: value})
    assert response.status_code == 422, response.json
    assert f"{name}: Input should be {bound}" in response.json["error"]["message"]
    assert name in {d["field"] for d in response.json["error"]["details"]}


def test_every_duration_and_count_of_a_campaign_has_a_floor_and_a_ceiling():
    """Each number an owner gives a campaign is bounded on both sides, once, in the model."""
    numbers = [
        (name, field)
        for name, field in CampaignFields.model_fields.items()
        if {int, float} & set(get_args(field.annotation) or (field.annotation,))
    ]
    assert {"lease_s", "round_deadline_s", "render_timeout_s", "rounds"} <= {n for n, _ in numbers}
    for name, field in numbers:
        kinds = {type(m).__name__ for m in field.metadata}
        assert kinds & {"Ge", "Gt"} and kinds & {"Le", "Lt"}, (name, field.metadata)


def test_a_stored_row_with_absurd_durations_still_loads(caplog):
    """Rows stored before the floors keep loading (with their values, logged)."""
    stored = {**CampaignCreate(prompt="x").settings(), "lease_s": 1e-300}
    stored["round_deadline_s"] = 1e-300
    config = CampaignSettings.from_stored(stored)
    assert (config.lease_s, config.round_deadline_s) == (1e-300, 1e-300)
    assert Campaign(name="old", prompt="x", settings=stored).config.lease_s == 1e-300
    assert "kept as stored" in caplog.text


def test_the_worker_rejects_out_of_bounds_render_settings_by_the_model(tmp_path):
    """The render worker trusts the validated message: a bound broken in a message (an old or
    foreign coordinator) is an InvalidInput naming the field, before anything renders."""
    store = LocalStore(tmp_path / "objects")
    for bad, field in (({"width": 62}, "width"), ({"m": 33}, "m"), ({"seed": -1}, "seed")):
        with pytest.raises(InvalidInput, match=rf"settings\.{field}: Input should be"):
            render_round(store, "c" * 32, 0, {"generator": "cppn", **bad})
    assert store.list("") == []


@pytest.mark.parametrize(
    "body",
    [
        {"m": 33},
        {"steps": 201},
        {"guidance": 50.5},
        {"width": 2056},
        {"width": 8},
        {"height": 100},  # not a multiple of 8
        {"k": 33, "m": 32},
    ],
)
def test_limits_are_the_contract_limits(owner, body):
    response = owner.post("/api/campaigns", json={"prompt": "x", **body})
    assert response.status_code == 422, response.json


def test_the_api_offers_exactly_the_contract_generators():
    assert get_args(CampaignCreate.model_fields["generator"].annotation) == GENERATORS


def test_each_generator_has_defaults_and_a_round_budget():
    assert set(_GENERATOR_DEFAULTS) == set(GENERATORS)
    assert set(MAX_ROUND_PIXELS) == set(GENERATORS)


def test_render_settings_come_from_the_typed_settings():
    """The render message's settings are built from ``campaign.config``: an older row's missing
    keys have their defaults, and a stored value the model refuses outside the render fields
    (kept by from_stored) does not stop a render; the test hook goes with them."""
    stored = {
        "generator": "tiny-sd",
        "m": 4,
        "annotators_per_round": 10**9,
        "consensus_method": "no-such",
        "from_the_future": 1,
        "test_delay_s": 2.5,
        "image_salt": "s3cret",
    }
    settings = render_settings(Campaign(name="old", prompt="a fig", settings=stored))
    assert (settings.prompt, settings.m, settings.image_salt) == ("a fig", 4, "s3cret")
    assert {f: getattr(settings, f) for f in generator_defaults("tiny-sd")} == generator_defaults(
        "tiny-sd"
    )
    assert settings.test_delay_s == 2.5
    created = CampaignCreate(prompt="x", m=4, steps=3).settings()
    settings = render_settings(Campaign(name="new", prompt="x", settings=created))
    assert settings.test_delay_s == 0.0
    assert settings.model_dump(exclude={"prompt", "test_delay_s"}) == {
        f: v for f, v in created.items() if f in RenderSettings.model_fields
    } | {"image_salt": ""}


def test_a_render_value_beyond_its_bound_is_refused_by_name():
    stored = {**CampaignCreate(prompt="x").settings(), "steps": 10**6}
    with pytest.raises(InvalidInput, match="steps: Input should be less than or equal to 200"):
        render_settings(Campaign(name="odd", prompt="x", settings=stored))


def test_the_render_messages_test_delay_is_bounded():
    """The test hook's pause reaches the worker as a render field: a stored 1e300 s would hold
    a render worker for good."""
    stored = {**CampaignCreate(prompt="x").settings(), "test_delay_s": 1e300}
    with pytest.raises(InvalidInput, match="test_delay_s: Input should be less than or equal"):
        render_settings(Campaign(name="odd", prompt="x", settings=stored))


def test_the_image_salt_key_is_the_models_field():
    assert IMAGE_SALT in RenderSettings.model_fields
    assert IMAGE_SALT in CampaignSettings.model_fields


def test_a_stored_row_with_an_unknown_generator_still_loads():
    """A row written by another release (or by hand) names a generator this one lacks: the
    campaign still loads, to be shown and failed, not to crash every page that reads it."""
    from rankloop.core.campaign_settings import CampaignSettings

    loaded = CampaignSettings.from_stored({"generator": "stable-nope", "m": 4})
    assert loaded.generator == "stable-nope" and loaded.m == 4


# A campaign's settings are read typed (``campaign.config``, a CampaignSettings), never by a
# string key of the stored JSON: a key read there is a second spelling of a field, its default
# and its bound. SQL reads the JSON column by path, typed by the path's ``as_*()``: the column
# of the mapped class (``Campaign.settings[...]``) or of a Core table (``c.c.settings[...]``).
KEY_READ = re.compile(r"\.settings\s*(\[|\.get\s*\()")
SQL_JSON_PATH = re.compile(
    r"(?:\b[A-Z]\w*|\.c)\.settings\[\s*(['\"])\w+\1\s*\]\.as_(?:integer|float|string|boolean)\(\)"
)
SCANNED = ("service", "rankloop", "gpu_worker")


def key_reads(path: Path, root: Path) -> list[str]:
    """Each line of ``path`` that reads a campaign's settings by key, but SQL's JSON paths."""
    return [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if KEY_READ.search(SQL_JSON_PATH.sub("", line))
    ]


def test_no_campaign_setting_is_read_by_key():
    root = Path(__file__).resolve().parents[1]
    found = [
        line
        for package in SCANNED
        for path in sorted((root / package).rglob("*.py"))
        for line in key_reads(path, root)
    ]
    assert found == [], "read these through campaign.config (CampaignSettings):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "line",
    [
        'lease = campaign.settings["lease_s"]',
        'quota = row.settings.get("tasks_per_annotator", 10)',
        "m = self.settings ['m']",
        'quorum = Campaign.settings["annotators_per_round"]  # untyped: not a SQL path',
        'n = c.c.settings["m"].as_integer() + campaign.settings["k"]',
    ],
)
def test_the_scan_finds_a_planted_key_read(tmp_path, line):
    planted = tmp_path / "service" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(f"x = 1\n{line}\n")
    assert key_reads(planted, tmp_path) == [f"service/planted.py:2: {line}"]


@pytest.mark.parametrize(
    "line",
    [
        'quorum = Campaign.settings["annotators_per_round"].as_integer()',
        "lease_s = c.c.settings['lease_s'].as_float()",
        'done < CAMPAIGNS.c.settings["tasks_per_annotator"].as_integer()',
        'lease = settings.get("lease_s")  # a dict of the create request, not a campaign',
        "lease = campaign.config.lease_s",
    ],
)
def test_the_scan_leaves_sql_paths_and_typed_reads_alone(tmp_path, line):
    kept = tmp_path / "kept.py"
    kept.write_text(line + "\n")
    assert key_reads(kept, tmp_path) == []


# -- the model list (RANKLOOP_MODELS) ----------------------------------------------------------
def test_a_model_off_the_list_is_refused_at_create_preview_and_fork(owner):
    """A diffusers campaign names a model the render worker opens (any path, any hub id): the
    coordinator takes only the operator's list, and its 422 names the models offered; it never
    looks at the disk, so /root, /etc/passwd and a missing folder are refused alike."""
    app_settings = settings_of(owner.client.application)
    assert app_settings.models == ()  # the default: only the built-in generators
    errors = set()
    for model in ("/root", "/etc/passwd", "/no/such/folder", "org/any-hub-model"):
        for path in ("/api/campaigns", "/api/previews"):
            body = {"prompt": "x", "generator": "diffusers", "model": model}
            response = owner.post(path, json=body)
            assert response.status_code == 422, (path, response.json)
            error = response.json["error"]
            assert error["details"] == [
                {"field": "model", "message": error["details"][0]["message"]}
            ]
            errors.add(error["message"].replace(repr(model), "MODEL"))
    assert errors == {
        "model: model MODEL is not on this server's model list (RANKLOOP_MODELS, set by its "
        "operator): this server offers none (only the built-in generators cppn and tiny-sd)"
    }
    response = owner.post("/api/campaigns", json={"prompt": "x", "generator": "diffusers"})
    assert response.status_code == 422 and "needs a model" in response.json["error"]["message"]

    app_settings.models = ("org/listed", "/srv/models/sd")
    refused = owner.post("/api/campaigns", json={"prompt": "x", "generator": "diffusers",
                                                 "model": "/root"})  # fmt: skip
    assert refused.status_code == 422
    assert (
        "the models offered are 'org/listed', '/srv/models/sd'" in refused.json["error"]["message"]
    )
    listed = owner.campaign(generator="diffusers", model="/srv/models/sd")
    assert listed["settings"]["model"] == "/srv/models/sd"
    # The built-in generators load no model: what their model field says is never opened.
    assert owner.campaign(generator="cppn")["settings"]["generator"] == "cppn"

    # A fork renders with its source's model: one taken off the list since is refused.
    app_settings.models = ("org/listed",)
    fork = owner.post(f"/api/campaigns/{listed['id']}/fork", json={"round": 0})
    assert fork.status_code == 422, fork.json
    assert fork.json["error"]["details"][0]["field"] == "model"


def test_the_model_list_reads_commas_and_spaces():
    from rankloop.core.settings import load_settings

    models = load_settings({"RANKLOOP_MODELS": "org/a, /srv/b\n  stabilityai/sd-turbo,,"}).models
    assert models == ("org/a", "/srv/b", "stabilityai/sd-turbo")
    assert load_settings({}).models == ()


def test_the_attention_policy_default_and_an_explicit_limit():
    from rankloop.core.campaign_settings import CampaignSettings, over_attention_limit

    default = CampaignSettings.from_stored({"prompt": "p"})  # a stored row without the key
    assert default.max_attention_failures is None
    # (failed, done) -> withheld: more than half of the checks failed, and at least 2
    cases = {(0, 5): False, (1, 1): False, (2, 2): True, (2, 3): True, (2, 4): False, (5, 9): True}
    assert {c: over_attention_limit(default, *c) for c in cases} == cases
    strict = default.model_copy(update={"max_attention_failures": 0})
    assert [over_attention_limit(strict, f, 10) for f in (0, 1)] == [False, True]
    lenient = default.model_copy(update={"max_attention_failures": 3})
    assert [over_attention_limit(lenient, f, 4) for f in (3, 4)] == [False, True]
