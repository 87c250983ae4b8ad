"""Image-set campaigns: the owner's own images ranked, one round per item, no optimizer.

- :mod:`service.image_sets.reading`: the items of a folder tree, a zip, or a table (CSV, JSON
  lines, Parquet), streamed, each with the line it came from;
- :mod:`service.image_sets.storing`: an item's images checked and stored once by content, and
  its attention image;
- :mod:`service.image_sets.importer`: the items into a draft image-set campaign as rounds, all
  or nothing;
- :mod:`service.image_sets.rounds`: a queued item opens when an open one closes.

``POST /api/campaigns/<id>/items`` and ``rankloop import-images`` both go through
:func:`service.image_sets.importer.import_items`. The limits: :mod:`rankloop.core.image_sets`.
"""
