"""The ``convoice`` command line: one module per command group, the root in :mod:`.root`."""

from convoice.cli.root import app, main

__all__ = ["app", "main"]
