"""Where the pairs tables meet Pick-a-Pic v2's types, so that a training script written for it
reads ours, and ours concatenated with it or with each other, without a cast.

- ``user_id`` is int64 there: ours is :func:`user_number` of the annotator's pseudonym, a
  stable mapping (the same pseudonym gives the same number in every export and campaign, so
  concatenated exports keep one user one number) kept beside it as ``annotator_id``. A round's
  consensus is user :data:`CONSENSUS_USER_ID`, a number no pseudonym maps to.
- Columns that are null in some rows by design (``ranking_id`` of a consensus pair,
  ``attention_passed`` of a round without a check) are pandas' nullable types in the Parquet
  file's pandas metadata: ``pairs`` and ``consensus_pairs`` then read with the same dtypes
  (``Int64``, ``boolean``), where an all-null column would read as float and clash.
"""

from __future__ import annotations

import hashlib
import json

CONSENSUS_USER = "consensus"  # the annotator_id of a consensus pair
CONSENSUS_USER_ID = 0

# pandas' nullable dtype of each column that may hold nulls and is not float or string.
NULLABLE_DTYPES = {"ranking_id": "Int64", "attention_passed": "boolean"}


def user_number(annotator_id: str) -> int:
    """The int64 ``user_id`` of a pseudonym: the first 63 bits of its BLAKE2b-64 digest, so
    positive; 0 is the consensus, and a digest of 0 (one in 2**63) is 1 instead. Two
    pseudonyms collide with probability about n**2 / 2**64 (none in practice)."""
    digest = hashlib.blake2b(annotator_id.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


def pandas_metadata(names: list[str]) -> bytes:
    """The ``pandas`` schema metadata naming the nullable dtypes of ``names`` (pyarrow's
    ``to_pandas`` and ``pandas.read_parquet`` read it; other readers ignore it)."""
    columns = [
        {"name": name, "field_name": name, "pandas_type": dtype.lower(),
         "numpy_type": dtype, "metadata": None}
        for name, dtype in NULLABLE_DTYPES.items() if name in names
    ]  # fmt: skip
    metadata = {"index_columns": [], "column_indexes": [], "columns": columns}
    return json.dumps({**metadata, "creator": {"library": "rankloop"}}).encode()
