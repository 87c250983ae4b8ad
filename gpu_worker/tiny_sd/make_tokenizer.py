"""Regenerate the offline tokenizer files shipped beside this script (``vocab.json``,
``merges.txt``): a tiny CLIP byte-level BPE vocabulary, so that ``tiny-sd`` and the random-weight
benchmark pipelines never download anything from a model hub.

The vocabulary holds every byte symbol (alone and word-final with ``</w>``), the merges of a few
common English letter pairs, and CLIP's two special tokens. Run ``python -m
gpu_worker.tiny_sd.make_tokenizer`` after changing it; the output is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
COMMON_PAIRS = [
    "th",
    "he",
    "in",
    "er",
    "an",
    "re",
    "on",
    "at",
    "en",
    "nd",
    "ti",
    "es",
    "or",
    "te",
    "of",
    "ed",
    "is",
    "it",
    "al",
    "ar",
    "st",
    "to",
    "nt",
    "ng",
    "se",
    "ha",
    "as",
    "ou",
    "io",
    "le",
    "ve",
]


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build() -> tuple[dict[str, int], list[str]]:
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols]
    merges = []
    for pair in COMMON_PAIRS:
        a, b = pair[0], pair[1]
        merges.append(f"{a} {b}")
        merges.append(f"{a} {b}</w>")
        tokens += [a + b, a + b + "</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def main() -> None:
    vocab, merges = build()
    (HERE / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (HERE / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


if __name__ == "__main__":
    main()
