"""The line every production process prints at start: which database, broker and store.

``rankloop db upgrade``, ``rankloop serve``, the bookkeeping worker, beat and the render
workers call :func:`announce`. When no ``RANKLOOP_*`` variable is set at all (an env file that
was not loaded), the embedded defaults under ``var/`` are in use: a second, loud line says so,
because such a process meets nobody else's database or queue and would otherwise wait in
silence. It warns rather than refuses: the same commands run a one-machine setup on purpose
(docs/guides/deploy.md, "The env file").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from rankloop.core.settings import ENV_PREFIX, Settings


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://user:***@host/db``)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe(settings: Settings, database: bool = True) -> str:
    """``database ..., broker ..., store ...`` (``database=False``: a render worker's, which
    has none)."""
    parts = [f"database {redact(settings.database_url)}"] if database else []
    prefix = settings.broker_transport_options.get("global_keyprefix")
    broker = redact(settings.broker_url) + (f" (key prefix {prefix!r})" if prefix else "")
    parts += [f"broker {broker}", f"store {settings.store_url}"]
    return ", ".join(parts)


def uses_embedded_defaults(environ: Mapping[str, str] | None = None) -> bool:
    """True when no ``RANKLOOP_*`` variable is set (then every default is the embedded one)."""
    names = os.environ if environ is None else environ
    return not any(name.startswith(ENV_PREFIX) for name in names)


def announce(
    process: str,
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    database: bool = True,
) -> list[str]:
    """Print (to stderr) what ``process`` uses, and a warning when it is only the embedded
    defaults; return the lines."""
    lines = [f"{process}: {describe(settings, database)}"]
    if uses_embedded_defaults(environ):
        lines.append(
            f"WARNING: {process}: no RANKLOOP_* variable is set: using the embedded defaults "
            f"under {settings.var_dir} (SQLite, local store, SQLite broker), which no other "
            "machine shares. Load your env file (docs: Deploy, The env file) unless this is meant."
        )
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    return lines


__all__ = ["announce", "describe", "redact", "uses_embedded_defaults"]
