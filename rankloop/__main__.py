"""``python -m rankloop``: the same as the ``rankloop`` command."""

from rankloop.commands.cli import main

main()
