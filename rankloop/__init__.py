"""rankloop: a crowdsourced ranking service that steers image generators with human judgement.

``rankloop.core`` is the pure bottom layer every tier builds on; ``rankloop.stores`` picks an
object-store backend; above the tiers (``service``, ``gpu_worker``, ``annotator_ui``) stand
``rankloop.simulation`` (simulated crowds and objectives), ``rankloop.commands`` (the command
line and the web app) and, at the top, ``rankloop.bench`` (the benchmarks).
"""

from rankloop.core.version import __version__

__all__ = ["__version__"]
