"""rankloop: a crowdsourced ranking service that steers image generators with human judgement.

``rankloop.core`` is the pure bottom layer every tier builds on; ``rankloop.stores`` picks an
object-store backend; the rest of this package is the top layer: the command line,
``rankloop up``, the simulators and the benchmarks.
"""

from rankloop.core.version import __version__

__all__ = ["__version__"]
