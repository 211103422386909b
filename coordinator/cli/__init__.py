"""Command-line interface: ``coordinator <command>``. Each module registers its commands on the shared app."""

from coordinator.cli.app import app, main

__all__ = ["app", "main"]
