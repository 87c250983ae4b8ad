"""rankloop: a crowdsourced ranking service that steers image generators with human judgement.

The top-level package holds what both tiers share and that imports neither Flask-side
database code nor torch: the error hierarchy, the object store, the command line and the
simulation and benchmark tools.
"""

__version__ = "0.1.0"
