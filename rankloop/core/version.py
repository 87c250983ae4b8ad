"""The release's version, in one place: the installed package's metadata, which comes from
``pyproject.toml`` (``[project] version``). Read by the command line (``rankloop --version``)
and the coordinator's OpenAPI document."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rankloop")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
