"""Annotator reliability: a one-coin Dawid–Skene model over pairwise comparisons.

Each annotator orders any pair correctly with probability ``p_j``; the voting weight is the
log-odds ``log(p_j / (1 - p_j))``, the optimal weight for independent voters (Nitzan & Paroush
1982): 0 for a coin-flipping spammer, negative for an annotator who reverses rankings.
:class:`AnnotatorReliability` pools the evidence over a campaign's rounds;
:func:`weigh_annotators` refines one round's weights and the leave-one-out consensus together
by EM-style passes.

References
----------
Dawid, A. P. & Skene, A. M. (1979). Maximum likelihood estimation of observer error-rates using
the EM algorithm. *Applied Statistics* 28(1).
Nitzan, S. & Paroush, J. (1982). Optimal decision rules in uncertain dichotomous choice
situations. *International Economic Review* 23(2).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rankloop.core.consensus.evidence import Answer, annotator_key, signed_votes
from rankloop.core.consensus.orientation import mirror_log_odds, mirrored_mean
from rankloop.core.consensus.scaled_pl import PRIOR_PRECISION, PRIOR_SCALE
from rankloop.core.errors import InvalidInput

EM_PASSES = 8  # at most; the passes stop once no weight moves by 1e-4
CHECK_PSEUDO_PAIRS = 4.0
"""How many pairwise observations one attention check is worth (its truth is known, unlike a
consensus pair, but all its pairs share one item and are not independent)."""

ACCURACY_CLIP = (0.02, 0.98)  # keeps log-odds weights within about +-3.9


@dataclass
class Evidence:
    """Soft counts about one annotator, pooled over rounds (one round's, or a campaign's)."""

    agree: float = 0.0  # soft count of pairwise agreements with the leave-one-out consensus
    disagree: float = 0.0
    checks_passed: float = 0.0  # attention checks, as fractions of their pairs passed
    checks_failed: float = 0.0
    rounds: int = 0

    def plus(self, other: Evidence, factor: float = 1.0) -> Evidence:
        return Evidence(
            self.agree + factor * other.agree,
            self.disagree + factor * other.disagree,
            self.checks_passed + factor * other.checks_passed,
            self.checks_failed + factor * other.checks_failed,
            self.rounds + other.rounds,
        )


@dataclass
class AnnotatorReliability:
    """What a campaign has learnt about each annotator's reliability; updated by :func:`aggregate`.

    Model: a one-coin Dawid–Skene model over pairwise comparisons. Annotator ``j`` orders any pair
    correctly with probability ``p_j``, independently; ``p_j`` has a Beta prior
    (``prior_agree``, ``prior_disagree``: by default mildly trusting, a new annotator starts at
    3/5). Evidence, pooled over all rounds: soft counts of pairwise agreement with the
    leave-one-out weighted consensus of the other annotators (each pair counted by how sure
    the others are, so pairs nobody else judged count for nothing; and discounted by
    ``9 / (2n + 5)``, the design effect of pairs drawn from one ranking of ``n`` items) and
    attention checks (a known-worst item placed above a real one), each check worth
    ``CHECK_PSEUDO_PAIRS`` pairs.
    The voting weight is the log-odds ``log(p_j / (1 - p_j))``: 0 for a coin-flipping spammer,
    negative for an annotator who reverses rankings.

    Parameters
    ----------
    prior : dict, optional
        Another reliability's :meth:`to_dict` (say, the annotator pool's record across
        campaigns): its evidence seeds this one, scaled by ``prior_discount``. Only evidence is
        taken from it; this campaign's own rounds are recorded separately and ``to_dict`` keeps
        the two apart, so seeding twice never double-counts.
    prior_discount : float
        Weight in [0, 1] of the seeded evidence (default 0.5: other campaigns had other images).
    prior_agree, prior_disagree : float
        Beta prior pseudo-counts of every annotator's pairwise accuracy.
    """

    prior: dict | None = None
    prior_discount: float = 0.5
    prior_agree: float = 3.0
    prior_disagree: float = 2.0
    _own: dict[str, Evidence] = field(default_factory=dict, init=False, repr=False)
    _seed: dict[str, Evidence] = field(default_factory=dict, init=False, repr=False)
    # Scaled Plackett–Luce beliefs (scaled_pl.py): annotator -> (mean, precision) of the scale.
    _scales: dict[str, tuple[float, float]] = field(default_factory=dict, init=False, repr=False)

    VERSION = 2
    #: Version 1 (no scale beliefs) still loads: its annotators start from the prior scale.
    SUPPORTED_VERSIONS = (1, 2)

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior_discount <= 1.0:
            raise InvalidInput(f"prior_discount must be in [0, 1], got {self.prior_discount}")
        if self.prior_agree <= 0 or self.prior_disagree <= 0:
            raise InvalidInput("prior_agree and prior_disagree must be positive pseudo-counts")
        if self.prior is not None:
            seeded = AnnotatorReliability.from_dict(self.prior)
            for key in set(seeded._own) | set(seeded._seed):
                total = seeded._evidence(key)
                self._seed[key] = Evidence().plus(total, self.prior_discount)
            for key, (mean, precision) in seeded._scales.items():
                # Discounted like the evidence; never below the prior's own precision.
                self._scales[key] = (mean, max(PRIOR_PRECISION, precision * self.prior_discount))
            self.prior = None  # kept as evidence, not as a second copy of the dict

    # -- queries ---------------------------------------------------------------------------

    def _evidence(self, key: str) -> Evidence:
        total = Evidence()
        if key in self._seed:
            total = total.plus(self._seed[key])
        if key in self._own:
            total = total.plus(self._own[key])
        return total

    def accuracy(self, annotator_id: Hashable, extra: Evidence | None = None) -> float:
        """Posterior mean pairwise accuracy ``p_j`` (0.6 for an annotator never seen)."""
        evidence = self._evidence(annotator_key(annotator_id))
        if extra is not None:
            evidence = evidence.plus(extra)
        agree = self.prior_agree + evidence.agree + CHECK_PSEUDO_PAIRS * evidence.checks_passed
        disagree = (
            self.prior_disagree + evidence.disagree + CHECK_PSEUDO_PAIRS * evidence.checks_failed
        )
        return agree / (agree + disagree)

    def weight(self, annotator_id: Hashable, extra: Evidence | None = None) -> float:
        """Voting weight: log-odds of :meth:`accuracy`, clipped to about +-3.9."""
        p = float(np.clip(self.accuracy(annotator_id, extra), *ACCURACY_CLIP))
        return math.log(p / (1.0 - p))

    def scale(self, annotator_id: Hashable) -> tuple[float, float]:
        """The scaled Plackett–Luce belief about the annotator's scale: (mean, precision)."""
        return self._scales.get(annotator_key(annotator_id), (PRIOR_SCALE, PRIOR_PRECISION))

    def record_scale(self, annotator_id: Hashable, mean: float, precision: float) -> None:
        """Replace the annotator's scale belief (done by :func:`aggregate`)."""
        self._scales[annotator_key(annotator_id)] = (float(mean), float(precision))

    def orient_scales(self) -> bool:
        """Mirror every scale belief when the mirror mode is the more probable (an
        honest-majority prior on the signs plus the attention checks; see
        :mod:`.orientation`). True if it mirrored them."""
        keys = sorted(self._scales)
        if not keys:
            return False
        beliefs = np.array([self._scales[key] for key in keys])
        mean, precision = beliefs[:, 0], beliefs[:, 1]
        evidence = [self._evidence(key) for key in keys]
        passed = np.array([e.checks_passed for e in evidence])
        failed = np.array([e.checks_failed for e in evidence])
        if mirror_log_odds(mean, passed, failed) >= 0.0:
            return False
        for key, new_mean, new_precision in zip(
            keys, mirrored_mean(mean, precision), precision, strict=True
        ):
            self._scales[key] = (float(new_mean), float(new_precision))
        return True

    def rounds(self, annotator_id: Hashable) -> int:
        """Rounds of this campaign in which the annotator answered."""
        own = self._own.get(annotator_key(annotator_id))
        return own.rounds if own else 0

    def own_evidence(self) -> Evidence:
        """The campaign's own evidence pooled over its annotators (what it was seeded with left
        out)."""
        total = Evidence()
        for evidence in self._own.values():
            total = total.plus(evidence)
        return total

    @property
    def annotators(self) -> list[str]:
        """Ids (as strings) of every annotator with evidence, own or seeded."""
        return sorted(set(self._own) | set(self._seed))

    def summary(self) -> dict[str, dict[str, float]]:
        """Per annotator: accuracy, weight, rounds and attention checks passed/failed."""
        out = {}
        for key in self.annotators:
            evidence = self._evidence(key)
            out[key] = {
                "accuracy": self.accuracy(key),
                "weight": self.weight(key),
                "scale": self.scale(key)[0],
                "rounds": self.rounds(key),
                "checks_passed": evidence.checks_passed,
                "checks_failed": evidence.checks_failed,
            }
        return out

    # -- updates ----------------------------------------------------------------------------

    def record(self, annotator_id: Hashable, evidence: Evidence) -> None:
        """Add one round's evidence about an annotator (done by :func:`aggregate`)."""
        key = annotator_key(annotator_id)
        self._own[key] = self._own.get(key, Evidence()).plus(evidence)

    @classmethod
    def combine(cls, records: Iterable[Mapping[str, Any]]) -> AnnotatorReliability:
        """Pool several campaigns' records (their :meth:`to_dict`) into one, e.g. the annotator
        pool's record to seed a new campaign with ``AnnotatorReliability(prior=pool.to_dict())``.

        Only each campaign's own evidence is summed (never what it was seeded with), so pooling
        campaigns that were themselves seeded from the pool does not count anything twice.
        Scale beliefs pool as independent Gaussian evidence (their information beyond the
        prior adds up).
        """
        pool = cls()
        for record in records:
            campaign = cls.from_dict(record)
            for key, evidence in campaign._own.items():
                pool._own[key] = pool._own.get(key, Evidence()).plus(evidence)
            for key, (mean, precision) in campaign._scales.items():
                old_mean, old_precision = pool.scale(key)
                extra = max(precision - PRIOR_PRECISION, 0.0)
                total = old_precision + extra
                pool._scales[key] = ((old_mean * old_precision + mean * extra) / total, total)
        return pool

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able, versioned dictionary; :meth:`from_dict` restores it exactly."""

        def dump(table: dict[str, Evidence]) -> dict[str, dict[str, float]]:
            return {
                key: {
                    "agree": e.agree,
                    "disagree": e.disagree,
                    "checks_passed": e.checks_passed,
                    "checks_failed": e.checks_failed,
                    "rounds": e.rounds,
                }
                for key, e in sorted(table.items())
            }

        return {
            "version": self.VERSION,
            "prior_agree": self.prior_agree,
            "prior_disagree": self.prior_disagree,
            "prior_discount": self.prior_discount,
            "annotators": dump(self._own),
            "seeded": dump(self._seed),
            "scales": {
                key: {"mean": mean, "precision": precision}
                for key, (mean, precision) in sorted(self._scales.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnnotatorReliability:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or data.get("version") not in cls.SUPPORTED_VERSIONS:
            raise InvalidInput(
                f"not an AnnotatorReliability dict of version {list(cls.SUPPORTED_VERSIONS)}: "
                f"{str(data)[:80]!r}; build it with AnnotatorReliability.to_dict()"
            )
        try:
            reliability = cls(
                prior_discount=float(data.get("prior_discount", 0.5)),
                prior_agree=float(data["prior_agree"]),
                prior_disagree=float(data["prior_disagree"]),
            )

            def load(table: Mapping[str, Any]) -> dict[str, Evidence]:
                return {
                    str(key): Evidence(
                        float(v["agree"]),
                        float(v["disagree"]),
                        float(v["checks_passed"]),
                        float(v["checks_failed"]),
                        int(v["rounds"]),
                    )
                    for key, v in table.items()
                }

            reliability._own = load(data["annotators"])
            reliability._seed = load(data.get("seeded", {}))
            reliability._scales = {
                str(key): (float(v["mean"]), float(v["precision"]))
                for key, v in data.get("scales", {}).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInput(f"malformed AnnotatorReliability dict: {error!r}") from error
        return reliability


def weigh_annotators(
    answers: Sequence[Answer],
    reliability: AnnotatorReliability,
    known_worst: frozenset[int],
    n_items: int,
) -> tuple[list[float], list[Evidence]]:
    """EM-style passes: weights -> leave-one-out consensus -> this round's evidence -> weights.

    The leave-one-out consensus of pair (a, b) for annotator j is the posterior
    ``q = sigmoid(sum_{i != j} w_i v_i(a, b))`` of the one-coin model. With ``s = v_j (2q - 1)``
    per pair and ``n_eff = sum (2q - 1)^2``, ``E[s] = (2 p_j - 1) (2q - 1)^2``, so
    ``rho_j = sum s / n_eff`` estimates ``2 p_j - 1``; the round adds ``n_eff (1 + rho_j) / 2``
    agreements and ``n_eff (1 - rho_j) / 2`` disagreements to the annotator's record.
    """
    votes = signed_votes(answers)  # (J, n, n)
    upper = np.triu(np.ones((n_items, n_items), dtype=bool), k=1)
    if known_worst:  # pairs with an attention item are judged by the check, not the crowd
        worst = np.zeros(n_items, dtype=bool)
        worst[list(known_worst)] = True
        upper &= ~(worst[:, None] | worst[None, :])
    pair_votes = votes[:, upper]  # (J, pairs)

    checks = [_attention_evidence(a, known_worst) for a in answers]
    weights = [reliability.weight(a.annotator, checks[j]) for j, a in enumerate(answers)]
    evidence = [Evidence(rounds=1).plus(c) for c in checks]
    if len(answers) < 2 or pair_votes.shape[1] == 0:
        return weights, evidence
    # The pairs of one ranking are not independent: for a random ranking of n items Kendall's
    # tau has variance 2(2n + 5) / (9 n (n - 1)), against 2 / (n (n - 1)) for independent
    # pairs, so one ranking's pairs are worth 9 / (2n + 5) of their number (the design effect).
    design = [min(1.0, 9.0 / (2 * len(a.shown) + 5)) for a in answers]
    for _ in range(EM_PASSES):
        w = np.asarray(weights)[:, None]
        total = (w * pair_votes).sum(axis=0)
        new_evidence = []
        for j in range(len(answers)):
            others = total - w[j] * pair_votes[j]
            sureness = np.tanh(others / 2.0)  # = 2 sigmoid(others) - 1
            judged = pair_votes[j] != 0
            n_eff = float((sureness[judged] ** 2).sum())
            signed = float((pair_votes[j][judged] * sureness[judged]).sum())
            rho = float(np.clip(signed / n_eff, -1.0, 1.0)) if n_eff > 1e-12 else 0.0
            n_eff *= design[j]
            round_evidence = Evidence(n_eff * (1 + rho) / 2, n_eff * (1 - rho) / 2, rounds=1)
            new_evidence.append(round_evidence.plus(checks[j]))
        new_weights = [
            reliability.weight(a.annotator, e) for a, e in zip(answers, new_evidence, strict=True)
        ]
        converged = np.allclose(new_weights, weights, atol=1e-4)
        weights, evidence = new_weights, new_evidence
        if converged:
            break
    return weights, evidence


def _attention_evidence(answer: Answer, known_worst: frozenset[int]) -> Evidence:
    """Fraction of an answer's (real item, known-worst item) pairs ordered correctly, per check."""
    passed = failed = 0.0
    for worst in known_worst:
        correct = answer.pairs[:, worst].sum() - answer.pairs[worst, list(known_worst)].sum()
        wrong = answer.pairs[worst, :].sum() - answer.pairs[worst, list(known_worst)].sum()
        judged = correct + wrong
        if judged > 0:
            passed += correct / judged
            failed += wrong / judged
    return Evidence(checks_passed=float(passed), checks_failed=float(failed))
