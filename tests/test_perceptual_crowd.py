"""The perceptual crowd: the psychometric function's limits, ranking what it can tell apart,
reproducibility, and a campaign run under it."""

from __future__ import annotations

import numpy as np
import pytest

from rankloop.core.errors import InvalidInput
from rankloop.simulation.campaign import run_campaign
from rankloop.simulation.crowd import Crowd, SimulatedAnnotator
from rankloop.simulation.objectives import make_cppn_problem
from rankloop.simulation.perception import (
    DESKTOP,
    JND_DE00,
    PHONE,
    choice_probability,
    detection,
    differences,
    share_above,
)
from rankloop.simulation.perceptual_crowd import (
    PerceptualAnnotator,
    PerceptualCrowd,
    make_perceptual_crowd,
    perceptual_twin,
)


# ---------------------------------------------------------------------------- psychometric
@pytest.mark.parametrize("lapse", [0.0, 0.03, 0.06])
@pytest.mark.parametrize("taste", [0.0, 0.7, 1.0])
def test_identical_images_are_a_coin_flip_whatever_the_taste(lapse, taste):
    assert detection(0.0) == 0.0
    assert choice_probability(0.0, taste, JND_DE00, lapse) == pytest.approx(0.5)


@pytest.mark.parametrize("lapse", [0.0, 0.04])
@pytest.mark.parametrize("taste", [0.2, 0.9, 1.0])
def test_very_different_images_are_the_tastes_choice_minus_lapses(lapse, taste):
    far = 50.0 * JND_DE00
    assert choice_probability(far, taste, JND_DE00, lapse) == pytest.approx(
        lapse / 2 + (1 - lapse) * taste
    )


def test_the_jnd_is_the_75_percent_point_and_the_function_rises():
    assert detection(JND_DE00) == pytest.approx(0.5)
    assert choice_probability(JND_DE00, 1.0) == pytest.approx(0.75)
    d = np.linspace(0.0, 2 * JND_DE00, 20)
    assert np.all(np.diff(detection(d)) > 0)
    assert detection(10 * JND_DE00) == pytest.approx(1.0)
    # A person with a higher threshold sees less of the same difference.
    assert detection(JND_DE00, 2 * JND_DE00) < detection(JND_DE00, JND_DE00)


# ---------------------------------------------------------------------------- the crowd ranks
def _person_rates(seen: np.ndarray, lapse: float, draws: int = 3000) -> tuple[float, float]:
    """How often a person puts item 0 (the best by taste) first, and above item 1."""
    person = PerceptualAnnotator("p", temperature=0.05, lapse=lapse)
    utilities = np.array([2.0, 1.0, 0.0, -1.0])
    first = above = 0
    for draw in range(draws):
        order = person.answer(utilities, seen, np.random.default_rng([7, draw]))
        first += order[0] == 0
        above += order.index(0) < order.index(1)
    return first / draws, above / draws


def test_a_person_who_cannot_tell_images_apart_ranks_them_at_random():
    first, above = _person_rates(np.zeros((4, 4)), lapse=0.0)
    assert first == pytest.approx(0.25, abs=0.04)
    assert above == pytest.approx(0.5, abs=0.04)


def test_a_person_who_sees_large_differences_follows_the_taste_but_for_lapses():
    seen = np.full((4, 4), 40.0 * JND_DE00)
    np.fill_diagonal(seen, 0.0)
    first, above = _person_rates(seen, lapse=0.0)
    assert first > 0.98 and above > 0.98
    lapsing, _ = _person_rates(seen, lapse=0.3)
    assert 0.5 < lapsing < 0.9  # lapses answer at random, whatever the images


def test_answers_are_reproducible_by_seed_and_change_with_it():
    crowd = make_perceptual_crowd([0.5, 0.7, 0.5], seed=3, k=3, carelessness=[0, 0, 0.5])
    seen = np.full((9, 9), JND_DE00)
    np.fill_diagonal(seen, 0.0)
    values = np.linspace(0.0, 1.0, 9)
    first = crowd.rank(values, 4, [8], seen=seen)
    assert crowd.rank(values, 4, [8], seen=seen) == first
    again = make_perceptual_crowd([0.5, 0.7, 0.5], seed=3, k=3, carelessness=[0, 0, 0.5])
    assert again == crowd and again.rank(values, 4, [8], seen=seen) == first
    others = [
        make_perceptual_crowd([0.5, 0.7, 0.5], seed=s, k=3).rank(values, 4, [8], seen=seen)
        for s in range(4, 9)
    ]
    assert any(answer != first for answer in others)
    assert all(len(order) == 3 for _, order in first)


def test_people_differ_in_threshold_and_lapse_within_the_published_ranges():
    crowd = make_perceptual_crowd([0.5] * 40, seed=1)
    thresholds = np.array([p.threshold for p in crowd.annotators])
    lapses = np.array([p.lapse for p in crowd.annotators])
    assert np.median(thresholds) == pytest.approx(JND_DE00, rel=0.15)
    assert thresholds.std() > 0.2
    assert lapses.min() >= 0.0 and lapses.max() <= 0.06 and lapses.std() > 0


def test_the_twin_of_a_pixel_exact_crowd_keeps_its_people_and_refuses_adversaries():
    exact = Crowd(
        (
            SimulatedAnnotator("h0", "honest", 0.5, k=3),
            SimulatedAnnotator("c0", "careless", 0.7, k=3, carelessness=0.5),
        ),
        seed=2,
    )
    twin = perceptual_twin(exact, DESKTOP)
    assert [p.id for p in twin.annotators] == ["h0", "c0"]
    assert [p.carelessness for p in twin.annotators] == [0.0, 0.5]
    assert twin.viewing == DESKTOP and twin.render_size == DESKTOP.samples
    with pytest.raises(InvalidInput):
        perceptual_twin(Crowd((SimulatedAnnotator("a0", "adversary"),)))


def test_a_wrong_sized_difference_matrix_is_refused():
    crowd = PerceptualCrowd((PerceptualAnnotator("p"),))
    with pytest.raises(InvalidInput):
        crowd.rank([0.0, 1.0, 2.0], seen=np.zeros((2, 2)))


# ---------------------------------------------------------------------------- seeing images
def test_differences_are_zero_for_identical_images_and_large_for_different_ones():
    grey = np.full((32, 32, 3), 128, np.uint8)
    red = grey.copy()
    red[..., 0] = 255
    slightly = grey.copy()
    slightly[..., :] = 129
    matrix = differences([grey, grey.copy(), slightly, red], PHONE)
    assert matrix[0, 1] == 0.0 and np.allclose(matrix, matrix.T)
    assert 0.0 < matrix[0, 2] < JND_DE00 < matrix[0, 3]
    assert share_above(matrix, [0, 1, 2]) == 0.0
    assert share_above(matrix) == pytest.approx(3 / 6)


def test_a_campaign_under_the_perceptual_crowd_records_what_it_saw_and_is_reproducible():
    def run() -> list:
        crowd = make_perceptual_crowd([0.5, 0.7], seed=5, k=3)
        problem = make_cppn_problem("colour", 5)
        return list(run_campaign(rounds=3, crowd=crowd, problem=problem, m=6, k=3, seed=5))

    first, second = run(), run()
    assert [r.f_ratio for r in first] == [r.f_ratio for r in second]
    for record in first:
        assert 0.0 <= record.perception["pairs_above"] <= 1.0
        assert record.perception["median_de"] > 0.0
    with pytest.raises(InvalidInput, match="renders"):
        crowd = make_perceptual_crowd([0.5], seed=0)
        list(run_campaign("sphere", 4, rounds=1, crowd=crowd))
