"""Simulated crowds and objectives: the algorithm without people, and annotators over HTTP.

``crowd`` (simulated annotators' answers), ``perceptual_crowd`` and ``perception`` (a crowd
that ranks only what it can tell apart at tile size), ``objectives`` (synthetic problems), ``campaign``
(optimizer + crowd + consensus round by round) and ``http_annotators`` (simulated annotators
who rank over the real API). Above the tiers, below the commands and the benchmarks.
"""
