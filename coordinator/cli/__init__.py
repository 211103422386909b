"""Command-line interface: ``coordinator <command>``. Each module registers its commands on the shared app."""

from coordinator.runtime.frozen_gc import held_off_then_frozen

with held_off_then_frozen():  # most of a command's imports happen here, before ``main`` runs (``runtime.frozen_gc``)
    from coordinator.cli.app import app
    from coordinator.cli.entry import main

__all__ = ["app", "main"]
