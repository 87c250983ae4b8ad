"""Image-set campaigns: the owner's own images ranked, one round per item, no optimizer.

- :mod:`service.image_sets.reading`: the items of a folder tree, a zip, a table (CSV, JSON
  lines, Parquet; :mod:`service.image_sets.tables`) or a Hugging Face datasets folder
  (:mod:`service.dataset_folders`), streamed, each with the line it came from, a malformed one
  with its error (:mod:`service.image_sets.items`);
- :mod:`service.image_sets.storing`: an item's images checked and stored once by content, and
  its attention image;
- :mod:`service.image_sets.importer`: the items into a draft image-set campaign as rounds, all
  or nothing, or skipping the malformed ones with a report;
- :mod:`service.image_sets.preview`: a dry run's first items, with inline thumbnails;
- :mod:`service.image_sets.rounds`: a queued item opens when an open one closes.

``POST /api/campaigns/<id>/items`` and ``rankloop import-images`` both go through
:func:`service.image_sets.importer.import_items`. The limits: :mod:`rankloop.core.image_sets`.
"""
