"""The optimizer's explicit state (rankloop/core/optimizer/parts.py): the rounds are functions of
one OptimizerState, it round-trips through the versioned dictionary, and no module of the
package reads another object's private attributes."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import rankloop.core.optimizer as package
from rankloop.core.optimizer import RankSGD, two_phase, verified
from rankloop.core.optimizer.parts import OptimizerState
from rankloop.core.optimizer.state import read_state_dict, write_state_dict

PACKAGE_DIR = Path(package.__file__).parent


def sphere(x):
    return np.sum(np.asarray(x) ** 2, axis=-1)


def ranking(points, k=None):
    order = np.argsort(sphere(points.reshape(len(points), -1)), kind="stable").tolist()
    return order if k is None else order[:k]


def advanced(schedule: str, rounds: int = 6, **options) -> RankSGD:
    opt = RankSGD(
        np.linspace(-1.0, 2.0, 12).reshape(3, 4), m=8, k=3, seed=3, schedule=schedule, **options
    )
    for _ in range(rounds):
        opt.tell(ranking(opt.ask().points, 3))
    return opt


def state_of(opt: RankSGD) -> OptimizerState:
    return read_state_dict(opt.state_dict()).state


def private_reads_outside_their_class(source: str, name: str) -> list[str]:
    """``self._x`` reads in a class that neither assigns ``self._x`` nor defines ``_x`` (a mixin
    reading its host's attributes), and ``obj._x`` on anything but ``self`` or, in
    ``from_state_dict``, the instance it builds (``opt``)."""
    receivers = ("self", "opt")

    def private(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        )

    def on_own(node: ast.Attribute) -> bool:
        return isinstance(node.value, ast.Name) and node.value.id in receivers

    offences = []
    tree = ast.parse(source)
    for cls in [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]:
        own = {node.name for node in cls.body if isinstance(node, ast.FunctionDef)}
        own |= {
            node.attr
            for node in ast.walk(cls)
            if private(node) and isinstance(node.ctx, ast.Store) and on_own(node)
        }
        offences += [
            f"{name}:{node.lineno} {cls.name} reads .{node.attr}"
            for node in ast.walk(cls)
            if private(node) and on_own(node) and node.attr not in own
        ]
    offences += [
        f"{name}:{node.lineno} reads .{node.attr} of another object"
        for node in ast.walk(tree)
        if private(node) and not on_own(node)
    ]
    return offences


def test_no_module_reads_another_class_private_attributes():
    # The rounds take the state as an argument; only RankSGD touches RankSGD's attributes.
    offences = [
        offence
        for path in sorted(PACKAGE_DIR.glob("*.py"))
        for offence in private_reads_outside_their_class(path.read_text(), path.name)
    ]
    assert offences == []


def test_the_check_sees_a_mixin_reading_its_host():
    mixin = "class Rounds:\n    def points(self):\n        return self._x + self._step\n"
    assert len(private_reads_outside_their_class(mixin, "m.py")) == 2
    owner = "class Host:\n    def __init__(self):\n        self._x = 1\n    def x(self):\n        return self._x\n"
    assert private_reads_outside_their_class(owner, "m.py") == []
    assert len(private_reads_outside_their_class("def f(opt, s):\n    return s._x\n", "m.py")) == 1


@pytest.mark.parametrize("schedule", ["verified", "two_phase"])
def test_the_state_round_trips_through_the_versioned_dictionary(schedule):
    opt = advanced(schedule, adapt_metric=True)
    opt.ask()
    opt.note_pixel_effect(0.4)
    state = state_of(opt)
    again = read_state_dict(write_state_dict(state, True, opt.stats))
    assert again.pending is True and again.stats == opt.stats
    for field in dataclasses.fields(OptimizerState):
        a, b = getattr(state, field.name), getattr(again.state, field.name)
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray) and np.array_equal(a, b)
            assert not np.shares_memory(a, b)  # the state owns its arrays
        else:
            assert a == b, field.name
    assert state.noted_effect == pytest.approx(0.4)


def test_verified_rounds_are_functions_of_the_state():
    opt = advanced("verified")
    state = state_of(opt)
    proposal = opt.ask()
    shown = verified.shown_points(state)
    assert np.array_equal(shown.reshape(proposal.points.shape), proposal.points)
    order = ranking(proposal.points, 3)
    outcome = verified.tell_verified(state, order, None)
    state.end_round()
    opt.tell(order)
    assert np.array_equal(state.x, opt.x.reshape(-1))
    assert state.step == opt.stats["step"] and state.round == opt.round
    assert outcome["picked"] == opt.stats["picked"]


def test_two_phase_rounds_are_functions_of_the_state():
    opt = advanced("two_phase", rounds=2)
    for _ in range(4):  # gradient rounds and a line search
        state = state_of(opt)
        kind = two_phase.next_kind(state)
        assert kind == opt.next_kind
        proposal = opt.ask()
        shown = two_phase.shown_points(state, kind)
        assert np.array_equal(shown.reshape(proposal.points.shape), proposal.points)
        order = ranking(proposal.points)
        two_phase.tell_two_phase(state, kind, order, None, len(proposal.points))
        state.end_round()
        opt.tell(order)
        assert np.array_equal(state.x, opt.x.reshape(-1))
        assert state.step == opt.stats["step"]
        assert state.gradient_streak == opt.state_dict()["gradient_streak"]
