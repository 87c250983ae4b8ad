"""A campaign's render settings: what the owner leaves unset is resolved once, by the rules in
``rankloop.core.contracts``, and the render worker receives and uses exactly that.

Campaigns are created through the HTTP API and started; the render message is read from the
coordinator's broker (``memory://`` in tests: the message as it was sent) and handed to the
worker's own code.
"""

from __future__ import annotations

import io
from typing import Any, get_args

import pytest
from flask import Flask
from PIL import Image

from gpu_worker.generators import load_generator, resolve_settings
from gpu_worker.render import render_round
from rankloop.core.contracts import GENERATORS, GPU_QUEUE, RENDER_TASK, generator_defaults
from rankloop.core.storage import LocalStore
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
    """Create and start a campaign over HTTP; its stored settings and the render message."""
    campaign = owner.campaign(start=True, **settings)
    (message,) = sent_renders(owner.client.application, campaign["id"])
    return campaign["settings"], message


@pytest.fixture(scope="module")
def tiny():
    import torch

    torch.set_num_threads(1)  # two cores shared by the whole test run
    return load_generator({"generator": "tiny-sd"})


def test_tiny_sd_campaign_renders_tiny_sd_defaults(owner, tiny, tmp_path):
    stored, message = started_campaign(owner, generator="tiny-sd")
    expected = generator_defaults("tiny-sd")  # 64x64, 6 DDIM steps, guidance 7.5
    sent = message["settings"]
    for field, value in expected.items():
        assert stored[field] == value, field
        assert sent[field] == value, field
    # The worker's own resolution keeps them, and the images come out at that size.
    resolved = resolve_settings(sent, tiny)
    assert {f: resolved[f] for f in expected} == expected
    store = LocalStore(tmp_path / "worker-objects")
    result = render_round(store, message["campaign_id"], 0, sent)
    with Image.open(io.BytesIO(store.get(result["images"][0]["key"]))) as image:
        assert image.size == (expected["width"], expected["height"])


def test_a_value_the_owner_sets_wins(owner, tiny):
    stored, message = started_campaign(
        owner, generator="tiny-sd", steps=10, guidance=3.0, width=48, scheduler="euler"
    )
    owned = {"steps": 10, "guidance": 3.0, "width": 48, "scheduler": "euler"}
    for settings in (stored, message["settings"], resolve_settings(message["settings"], tiny)):
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
    assert {f: resolved[f] for f in turbo} == turbo
    assert (resolved["width"], resolved["height"]) == (native, native)


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
