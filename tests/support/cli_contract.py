"""What a deployment artifact (compose file, Helm chart, managed-service recipe) may say to the coordinator: the
environment variables that are real settings, and ``coordinator`` command lines the real CLI accepts. Shared by the
tests that check those artifacts without running them."""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Mapping
from unittest import mock

import typer

from coordinator.airflow_plugin.records import INSTANCE_ENV, QUEUE_SIZE_ENV
from coordinator.cli import app
from coordinator.runtime.settings import Settings

#: What ``coordinator lineage serve`` reads besides the settings (``coordinator/cli/lineage_cmds.py``).
LINEAGE_ENV = {
    "COORDINATOR_LINEAGE_LISTEN", "COORDINATOR_LINEAGE_HTTP", "COORDINATOR_LINEAGE_TOKENS_FILE",
    "COORDINATOR_LINEAGE_INSTANCES",
}  # fmt: skip


def setting_variables() -> set[str]:
    """Every ``COORDINATOR_*`` variable a coordinator process reads: the settings' fields and the plugin's own."""
    return (
        {f"COORDINATOR_{field.upper()}" for field in Settings.model_fields}
        | {INSTANCE_ENV, QUEUE_SIZE_ENV}
        | (LINEAGE_ENV)
    )


def command_problem(args: list[str], env: Mapping[str, str | None] | None = None) -> str | None:
    """Why ``coordinator ARGS`` would not parse (unknown command, unknown flag, bad value, a required option given
    neither as a flag nor by its variable), or None when it does. ``env``: the artifact's environment, which the parse
    sees instead of this process's ``COORDINATOR_*`` variables (a value from a secret, None, counts as unset)."""
    if env is None:
        return _problem(args)
    kept = {name: value for name, value in os.environ.items() if not name.startswith("COORDINATOR_")}
    given = {name: value for name, value in env.items() if value is not None}
    with mock.patch.dict(os.environ, {**kept, **given}, clear=True):
        return _problem(args)


def _problem(args: list[str]) -> str | None:
    for module in pkgutil.iter_modules(importlib.import_module("coordinator.cli").__path__):
        if module.name.endswith("_cmds"):  # each registers its commands on ``app`` when imported
            importlib.import_module(f"coordinator.cli.{module.name}")
    group = typer.main.get_command(app)
    parent = group.make_context("coordinator", list(args))
    rest = list(args)
    # A command group (``lineage``) hands the rest to its subcommand (``serve``): descend to the one that runs.
    while rest and hasattr(group, "commands"):
        command = group.commands.get(rest[0])
        if command is None:
            return f"`coordinator {' '.join(args[: len(args) - len(rest) + 1])}` does not exist"
        try:
            parent = command.make_context(rest[0], rest[1:], parent=parent)
        except Exception as exc:  # typer vendors click: its UsageError is not importable from click
            return f"coordinator {' '.join(args)}: {exc}"
        # A group's context keeps its subcommand and that one's arguments in ``args`` (click 8.2+).
        group, rest = command, (list(getattr(parent, "_protected_args", [])) + list(parent.args)
                                if hasattr(command, "commands") else [])  # fmt: skip
    return None
