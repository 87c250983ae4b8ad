"""``python -m rankloop``: the same as the ``rankloop`` command."""

from rankloop.cli import main

main()
