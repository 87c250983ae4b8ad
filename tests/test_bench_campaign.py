"""`rankloop bench campaign`: its parts on a few rounds, and its summary and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankloop.bench.campaign import (
    METHODS,
    improvements,
    make_campaign_crowd,
    objectives,
    summarise,
)
from rankloop.bench.campaign_plot import plot_improvements
from rankloop.simulation.objectives import CPPN_TASTES, make_cppn_problem


@pytest.mark.parametrize("method", METHODS)
def test_each_method_steers_a_cppn_taste_and_reports_improvements(method):
    colour = objectives()[0]
    curve = improvements(colour, method, seed=1, rounds=4, adversary=False)
    assert len(curve) == 4
    assert all(value <= 1.0 for value in curve)  # 1 - f/f0 with f >= 0
    again = improvements(colour, method, seed=1, rounds=4, adversary=False)
    assert curve == again  # a campaign is a pure function of its seed


def test_round_0_of_the_new_default_leaves_the_delivered_latent_where_it_was():
    latent = objectives()[-1]
    curve = improvements(latent, "new default", seed=0, rounds=3, adversary=True)
    assert curve[0] == pytest.approx(0.0, abs=1e-9)  # round 0 shows no trial step


def test_cppn_tastes_score_rendered_images():
    for taste in CPPN_TASTES:
        problem = make_cppn_problem(taste, seed=0, size=16)
        values = problem.objective(np.stack([problem.x0, 2 * problem.x0]))
        assert values.shape == (2,) and np.all(values >= 0)
        assert problem.objective(problem.x0) == values[0]
        assert problem.render is not None and problem.render(problem.x0)[0].shape == (16, 16, 3)


def test_the_campaign_crowd_has_one_careless_annotator_and_an_optional_adversary():
    assert [a.kind for a in make_campaign_crowd(0, False).annotators] == [
        "honest",
        "honest",
        "careless",
    ]
    assert make_campaign_crowd(0, True).annotators[-1].kind == "adversary"


def test_summary_and_plot(tmp_path):
    curves = np.array([[0.0, 0.1, 0.2, 0.3, 0.4], [0.0, 0.0, -0.1, 0.0, 0.2]])
    row = summarise(curves, "toy", "new default")
    assert row["median@5"] == pytest.approx(0.3)
    assert row["worst@5"] == pytest.approx(0.2)
    assert row["not improved@5"] == 0.0
    assert "median@10" not in row  # only checkpoints within the campaign
    path = plot_improvements({"toy/new default": curves.tolist()}, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_bench_campaign_quick_writes_json_and_png(tmp_path):
    """The command end to end, on 2 seeds of 5 rounds (the quick run's 3 of 10 took a minute and
    a half of a loaded CI machine; the methods' steps are the parametrised test's above)."""
    from rankloop.commands.cli import main

    out = tmp_path / "campaign.json"
    result = CliRunner().invoke(
        main,
        ["bench", "campaign", "--quick", "--seeds", "2", "--rounds", "5", "--out", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["benchmark"] == "campaign"
    assert {row["method"] for row in document["rows"]} == set(METHODS)
    assert all("median@5" in row for row in document["rows"])
    assert (document["meta"]["seeds"], document["meta"]["rounds"]) == (2, 5)
    assert {len(curves) for curves in document["meta"]["curves"].values()} == {2}
    assert (tmp_path / "campaign.png").exists()


def test_bench_campaign_quick_runs_3_seeds_of_10_rounds_untuned(tmp_path, monkeypatch):
    """--quick alone: 3 seeds of 10 rounds each, the authors' loop untuned (its published
    step and radius)."""
    from rankloop.bench import campaign
    from rankloop.commands.cli import main

    runs: list[tuple] = []

    def improvements(objective, method, seed, rounds, adversary, authors=None):
        runs.append((seed, rounds, authors))
        return [0.0] * rounds

    monkeypatch.setattr(campaign, "improvements", improvements)
    monkeypatch.setattr(campaign, "tune_authors", lambda *args: pytest.fail("tuned"))
    out = tmp_path / "campaign.json"
    result = CliRunner().invoke(
        main, ["bench", "campaign", "--quick", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert {seed for seed, _, _ in runs} == {0, 1, 2}
    assert {(rounds, authors) for _, rounds, authors in runs} == {(10, (8.0, 0.03))}
