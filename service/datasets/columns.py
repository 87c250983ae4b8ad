"""The column types of the export's batches beside plain lists: a value in every row
(:class:`Repeat`), orders as place groups (:class:`Groups`) and image bytes by key
(:class:`Embedded`), each of which Arrow builds without a Python object per row (at a million
rankings the per-row objects were most of the export's time).
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol


class Images(Protocol):
    """Where :class:`Embedded` reads bytes (:class:`service.datasets.rows.Images`)."""

    def data(self, key: str) -> bytes | None: ...


class Repeat:
    """A column holding one value in every row: Arrow builds it without a Python object per row
    (a round's image lists, the campaign's settings)."""

    def __init__(self, value: Any, rows: int):
        self.value, self.rows = value, rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, part: slice) -> Repeat:
        return Repeat(self.value, len(range(self.rows)[part]))

    def to_list(self) -> list[Any]:
        return [self.value] * self.rows

    def to_arrow(self, type_: Any) -> Any:
        import pyarrow as pa

        return pa.repeat(pa.scalar(self.value, type_), self.rows)


class Groups:
    """A column of stored orders (a list inside one is a tied group) as place groups: one list
    per place. Without ties (``flat``) Arrow builds the nested lists from the flat values and
    their lengths, and no Python list is made per place."""

    def __init__(self, orders: list[list[Any]], flat: bool):
        self.orders, self.flat = orders, flat

    def __len__(self) -> int:
        return len(self.orders)

    def __getitem__(self, part: slice) -> Groups:
        return Groups(self.orders[part], self.flat)

    def to_list(self) -> list[list[list[Any]]]:
        return [_id_groups(o) for o in self.orders]

    def to_arrow(self, type_: Any) -> Any:
        import pyarrow as pa

        if not self.flat:
            return pa.array(self.to_list(), type_)
        values = list(itertools.chain.from_iterable(self.orders))
        places = pa.ListArray.from_arrays(
            pa.array(range(len(values) + 1), pa.int32()),
            pa.array(values, type_.value_type.value_type),
        )
        offsets = itertools.accumulate(map(len, self.orders), initial=0)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), places).cast(type_)

    def n_ranked(self) -> list[int]:
        if self.flat:
            return [len(o) for o in self.orders]
        return [sum(map(len, o)) for o in self.to_list()]

    def ties(self) -> list[bool]:
        if self.flat:
            return [False] * len(self.orders)
        return [len(o) < sum(map(len, o)) for o in self.to_list()]


class Embedded:
    """Image bytes named by their keys: as Arrow, a dictionary of the distinct images and an
    index per row (a round's few images, not a copy per pair), or plain bytes."""

    def __init__(self, keys: list[str], images: Images):
        self.keys, self.images = keys, images

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, part: slice) -> Embedded:
        return Embedded(self.keys[part], self.images)

    def to_list(self) -> list[bytes | None]:
        return [self.images.data(k) for k in self.keys]

    def to_arrow(self, type_: Any) -> Any:
        import pyarrow as pa

        if not pa.types.is_dictionary(type_):
            return pa.array(self.to_list(), type_)
        distinct = {k: n for n, k in enumerate(dict.fromkeys(self.keys))}
        return pa.DictionaryArray.from_arrays(
            pa.array([distinct[k] for k in self.keys], type_.index_type),
            pa.array([self.images.data(k) for k in distinct], type_.value_type),
        )


Column = list[Any] | Repeat | Groups | Embedded


def _id_groups(order: list[Any]) -> list[list[Any]]:
    """A stored order (a list inside it is a tied group) as groups: one list per place."""
    return [e if type(e) is list else [e] for e in order]
