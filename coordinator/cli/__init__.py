"""Command-line interface: ``coordinator <command>``. Each module registers its commands on the shared app."""

from coordinator.cli.app import app
from coordinator.cli.entry import main

__all__ = ["app", "main"]
