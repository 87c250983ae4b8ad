"""Train, validation and test splits by prompt: a stable hash of the prompt picks its split, so
a prompt is never in two splits (a model is tested on prompts it never saw) and the same prompt
falls in the same split in every export, whatever else the dataset holds.

The hash: the first 8 bytes of BLAKE2b of the prompt's UTF-8 bytes (personalised
``rankloop-split``), read big-endian as a fraction of 2**64, compared with the cumulative
fractions (train first). The prompt is taken exactly as stored: two spellings are two prompts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from rankloop.core.errors import InvalidInput

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` as the fractions of train, validation and test (each in [0, 1],
    summing to 1; a 0 leaves that split out)."""
    try:
        fractions = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInput(f"split fractions {text!r}: three numbers, e.g. 0.8,0.1,0.1") from None
    check_fractions(fractions)
    return fractions


def check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != len(SPLITS):
        raise InvalidInput(f"split fractions: three numbers ({', '.join(SPLITS)})")
    if any(not 0.0 <= f <= 1.0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise InvalidInput(f"split fractions {list(fractions)}: each in [0, 1], summing to 1")


def prompt_point(prompt: str) -> float:
    """Where ``prompt`` falls in [0, 1)."""
    digest = hashlib.blake2b(prompt.encode(), digest_size=8, person=b"rankloop-split")
    return int.from_bytes(digest.digest(), "big") / 2.0**64


class Splitter:
    """The split of each prompt under ``fractions``, remembered (a campaign repeats its prompt
    in every row)."""

    def __init__(self, fractions: Sequence[float] = DEFAULT_FRACTIONS):
        check_fractions(fractions)
        self.bounds: list[float] = []
        total = 0.0
        for fraction in fractions:
            total += fraction
            self.bounds.append(total)
        self.bounds[-1] = 1.0  # rounding never leaves a point past the last split
        self.fractions = tuple(fractions)
        self._seen: dict[str, str] = {}

    def __call__(self, prompt: str) -> str:
        split = self._seen.get(prompt)
        if split is None:
            point = prompt_point(prompt)
            split = next(s for s, b in zip(SPLITS, self.bounds, strict=True) if point < b)
            if len(self._seen) < 100_000:  # bounded: an image set may hold a prompt per row
                self._seen[prompt] = split
        return split
