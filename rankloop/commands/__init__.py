"""The command line: ``rankloop`` and each subcommand, one module a command.

Commands may import every floor below (``rankloop.bench`` is the one floor above them);
:mod:`rankloop.commands.cli` names them by module string, so ``rankloop --help`` imports none.
"""
