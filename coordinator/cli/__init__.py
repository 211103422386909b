"""Command-line interface: ``coordinator <command>``. Each module registers its commands on the shared app."""

from coordinator.cli.start_gc import imports_without_gc

with imports_without_gc():  # most of a command's imports happen here, before ``main`` runs (``cli.start_gc``)
    from coordinator.cli.app import app
    from coordinator.cli.entry import main

__all__ = ["app", "main"]
