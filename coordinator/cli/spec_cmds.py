"""Commands: (to be filled)."""

from coordinator.cli.app import app  # noqa: F401
