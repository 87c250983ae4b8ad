"""The object store: images, optimizer states and manifests, addressed by key.

The interface both tiers program against (:class:`ObjectStore`), the key layout of a round, and
:class:`LocalStore` (a directory, the embedded default). The S3 backend and the factory that
picks a backend from the settings live one layer up, in :mod:`rankloop.stores` (they import
boto3, which the core does not).
Keys are ``/``-separated relative paths; :func:`round_prefix` names the keys unique to one
(campaign, round), which is what makes a redelivered render task idempotent.

Key layout of a round, under ``round_prefix(campaign_id, round)``: ``images/<name>.png`` and
``thumbs/<name>.webp`` for every image shown and for the current best, where ``<name>`` is
:func:`image_name` (an unguessable digest: a URL says nothing about an image's index or role,
so the attention copy cannot be spotted by its URL, and no image URL can be guessed from the
campaign id); ``state.npz``; ``manifest.json`` (written last). The manifest maps each index
to its key.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from rankloop.core.errors import InvalidInput, NotFound


def round_prefix(campaign_id: str | int, round_number: int) -> str:
    """Key prefix owned by one round of one campaign (images, state, manifest)."""
    return f"campaigns/{campaign_id}/rounds/{round_number:04d}"


BEST: str = "best"  # the image_name "index" of the optimizer's current point
THUMB_SIDE: int = 256  # pixels of a thumbnail's longer side (``thumbs/<name>.webp``)


def image_name(
    campaign_id: str | int, round_number: int, index: int | str, seed: int, salt: str
) -> str:
    """The file name (without extension) of one image of a round: a digest of (campaign, round,
    index, seed) keyed by the campaign's secret ``salt``, the same on every re-render (so a
    redelivered render rewrites the same keys) and unguessable without the salt."""
    message = f"{campaign_id}/{round_number}/{index}/{seed}".encode()
    return hashlib.blake2b(message, key=salt.encode()[:64], digest_size=16).hexdigest()


def check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or key.endswith("/"):
        raise InvalidInput(f"invalid object key {key!r}: use a relative path like 'a/b/c.png'")
    return key


class ObjectStore(Protocol):
    """What both tiers need from a store. ``url`` may return None: then the web tier streams
    the object itself (``get``) instead of redirecting the browser to the store."""

    def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def url(self, key: str, expires_s: int = 3600) -> str | None: ...


class LocalStore:
    """A directory as an object store. Writes are atomic (temp file + rename), so a reader
    never sees half an object and two writers of the same key leave one whole object."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        # A symbolic link inside the root must not lead out of it (to /etc, another tenant...).
        if not path.resolve().is_relative_to(self.root):
            raise InvalidInput(f"invalid object key {key!r}: it leads outside the store")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            # Never the root's path: the message may reach a browser.
            raise NotFound(f"no object {key!r}") from None

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except InvalidInput:
            return False

    def list(self, prefix: str) -> list[str]:
        # A plain string prefix, as in S3: "a/b" matches "a/b/c" and "a/bc"; walk only the
        # deepest directory the prefix names.
        base = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = (
            str(p.relative_to(self.root).as_posix())
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def url(self, key: str, expires_s: int = 3600) -> str | None:
        return None


def iter_round_keys(store: ObjectStore, campaign_id: str | int, round_number: int) -> Iterator[str]:
    yield from store.list(round_prefix(campaign_id, round_number) + "/")
