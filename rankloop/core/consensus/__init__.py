"""Consensus of several annotators' partial rankings of one round's items.

The pure core of the coordinator's "ranking -> consensus" step: numpy, scipy and choix only.
One module per family of methods (:mod:`.evidence`, :mod:`.rules`, :mod:`.kemeny`,
:mod:`.plackett_luce`, :mod:`.reliability`, :mod:`.agreement`, :mod:`.aggregate`); the flat
API below is the public one.

Every annotator's answer is broken into pairwise evidence (a rank-breaking view that handles
top-k answers, rankings of a subset, and declared ties uniformly), then one of five rules turns
the evidence into one best-first order:

``"borda"``
    Net pairwise wins summed over annotators (for full rankings, affine to the Borda count).
``"copeland"``
    Pairwise majority wins minus losses; ties broken by Borda, then by item index.
``"plackett_luce"``
    Plackett–Luce maximum likelihood (``choix.ilsr_top1`` on the exact top-k decomposition, with
    a little ridge regularisation).
``"kemeny"``
    Kemeny–Young: the order that disagrees least with the pairwise evidence; exact by integer
    programming (``scipy.optimize.milp``) for up to ``KEMENY_EXACT_MAX`` items, Borda/Copeland
    starts plus insertion local search beyond.
``"auto"`` (default)
    Reliability-weighted Kemeny: each annotator's pairwise votes are weighted by the log-odds of
    their estimated pairwise accuracy (a one-coin Dawid–Skene model over pairs; Nitzan & Paroush
    1982 show these are the optimal weights for independent voters). Accuracies come from
    :class:`AnnotatorReliability`, which pools, across every round of a campaign, how often each
    annotator agrees with the leave-one-out weighted consensus and how they fare on attention
    checks. Accuracy below 1/2 gives a *negative* weight: an adversary who reverses rankings is
    read backwards, a spammer gets a weight near zero. Within a round the weights and the
    leave-one-out consensus are refined together by a few EM-style passes, so the first round,
    with no history, already discounts a lone dissenter.

References
----------
Dawid, A. P. & Skene, A. M. (1979). Maximum likelihood estimation of observer error-rates using
the EM algorithm. *Applied Statistics* 28(1).
Chen, X., Bennett, P. N., Collins-Thompson, K. & Horvitz, E. (2013). Pairwise ranking
aggregation in a crowdsourced setting (CrowdBT). *WSDM*.
Maystre, L. & Grossglauser, M. (2015). Fast and accurate inference of Plackett–Luce models
(ILSR, the ``choix`` library). *NeurIPS*.
Kendall, M. G. & Babington Smith, B. (1939). The problem of m rankings. *Ann. Math. Stat.* 10(3).
"""

from rankloop.core.consensus.aggregate import METHODS, Consensus, aggregate
from rankloop.core.consensus.agreement import kendall_w
from rankloop.core.consensus.evidence import OrderElement, Ranking, pairwise_matrix, parse_ranking
from rankloop.core.consensus.kemeny import KEMENY_EXACT_MAX, kemeny_order
from rankloop.core.consensus.plackett_luce import PL_REGULARISATION
from rankloop.core.consensus.reliability import (
    ACCURACY_CLIP,
    CHECK_PSEUDO_PAIRS,
    EM_PASSES,
    AnnotatorReliability,
)

__all__ = [
    "ACCURACY_CLIP",
    "CHECK_PSEUDO_PAIRS",
    "EM_PASSES",
    "KEMENY_EXACT_MAX",
    "METHODS",
    "PL_REGULARISATION",
    "AnnotatorReliability",
    "Consensus",
    "OrderElement",
    "Ranking",
    "aggregate",
    "kemeny_order",
    "kendall_w",
    "pairwise_matrix",
    "parse_ranking",
]
