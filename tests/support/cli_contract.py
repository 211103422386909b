"""What a deployment artifact (compose file, Helm chart, managed-service recipe) may say to the coordinator: the
environment variables that are real settings, and ``coordinator`` command lines the real CLI accepts. Shared by the
tests that check those artifacts without running them."""

from __future__ import annotations

import importlib
import pkgutil

import typer

from coordinator.airflow_plugin.records import INSTANCE_ENV, QUEUE_SIZE_ENV
from coordinator.cli import app
from coordinator.settings import Settings


def setting_variables() -> set[str]:
    """Every ``COORDINATOR_*`` variable a coordinator process reads: the settings' fields and the plugin's own."""
    return {f"COORDINATOR_{field.upper()}" for field in Settings.model_fields} | {INSTANCE_ENV, QUEUE_SIZE_ENV}


def command_problem(args: list[str]) -> str | None:
    """Why ``coordinator ARGS`` would not parse (unknown command, unknown flag, bad value), or None when it does."""
    for module in pkgutil.iter_modules(importlib.import_module("coordinator.cli").__path__):
        if module.name.endswith("_cmds"):  # each registers its commands on ``app`` when imported
            importlib.import_module(f"coordinator.cli.{module.name}")
    group = typer.main.get_command(app)
    command = group.commands.get(args[0])  # type: ignore[attr-defined]
    if command is None:
        return f"`coordinator {args[0]}` does not exist"
    parent = group.make_context("coordinator", list(args))
    try:
        command.make_context(args[0], list(args[1:]), parent=parent)
    except Exception as exc:  # typer vendors click: its UsageError is not importable from click
        return f"coordinator {' '.join(args)}: {exc}"
    return None
