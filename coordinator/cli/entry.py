"""The ``coordinator`` console script: the command modules imported for their registrations on the app, then the app.

Apart from ``app.py`` so that no command module is imported by the module it imports its ``app`` from.

Rules:
- **A command loads its own module.** ``coordinator watch ...`` imports the module that registers ``watch``
  (:data:`COMMAND_MODULES`) and no other command module, and typer builds only the commands registered: the other
  modules' imports and typer's reading of every command's signature were about 0.09 s of each start, before the
  watcher's first read of etcd. Anything else (no command, ``--help``, ``--version``, a name no module registers: a
  typo typer answers with its suggestions) loads every module, so the help and the suggestions list every command.
  ``tests/test_cli_entry.py`` holds the table to what the modules register.
- **Not httpx's own command line.** ``import httpx`` also imports httpx's command-line client where its libraries are
  installed (click, pygments and rich's syntax highlighting, here through typer and rich): about 0.04-0.06 s of
  every start, for a ``main`` nobody in this process calls. The console script marks that module as absent before
  anything imports httpx, and httpx then defines a ``main`` that only says its client is not installed.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, app, exit_with
from coordinator.errors import ConfigError, CoordinatorError, SpecError
from coordinator.runtime.frozen_gc import held_off_then_frozen

#: Each command (or group of subcommands) by the module of ``coordinator.cli`` that registers it (**A command loads its
#: own module**).
COMMAND_MODULES = {
    "check-plugin": "airflow_cmds",
    "skip-event": "asset_cmds",
    "release": "budget_cmds",
    **dict.fromkeys(("watch", "reconcile", "status", "why", "backfill"), "engine_cmds"),
    "check-airflow": "check_airflow_cmds",
    "diff": "diff_cmds",
    "doctor": "doctor_cmds",
    **dict.fromkeys(("hold", "release-hold", "holds", "history", "retract"), "incident_cmds"),
    "release-flap": "flap_cmds",
    "import-dags": "import_cmds",
    "lineage": "lineage_cmds",
    "probe": "probe_cmds",
    "prune": "prune_cmds",
    **dict.fromkeys(("rerun", "plan"), "rerun_cmds"),
    "roles": "roles_cmds",
    **dict.fromkeys(("validate", "schema", "graph", "inputs"), "spec_cmds"),
    "mark": "state_cmds",
    "trigger": "trigger_cmds",
}


def command_of(argv: list[str]) -> str | None:
    """The command ``argv`` (the arguments after the program's name) runs, when its module is known and nothing asks
    for the whole app (**A command loads its own module**); None otherwise."""
    # The app's own options (--version, --help, completion) come before a command: with one, everything loads.
    return argv[0] if argv and argv[0] in COMMAND_MODULES else None


def load_commands(command: str | None = None) -> None:
    """Import the module of ``command`` for its registrations on ``app``; every command module of
    :data:`COMMAND_MODULES` when None (``main()`` without a known command, the reference page and the tests see the
    same commands)."""
    names = {COMMAND_MODULES[command]} if command is not None else set(COMMAND_MODULES.values())
    for name in sorted(names):  # by name: commands register, and the help lists a panel's, in import order
        importlib.import_module(f"coordinator.cli.{name}")


def main() -> None:
    """Console-script entry point."""
    # gRPC's C core writes lines of its own to stderr, outside our log format ("I1126 21:46:21.285947 14554
    # ssl_transport_security.cc:2563] Handshake failed ..." for every failed TLS handshake, at INFO). Each such failure
    # reaches the operator as our own error with its fix (coordinator.etcd.tls_hint); the C core keeps its ERROR lines.
    # It reads the variable once, when grpc is first imported: before load_commands. An operator's own value wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "httpx" not in sys.modules:  # **Not httpx's own command line**; a process that already has httpx keeps it
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: "not importable"
    with held_off_then_frozen():  # the command's module and what it imports (``runtime.frozen_gc``)
        load_commands(command_of(sys.argv[1:]))

    # Outside typer a ``fail()`` (typer.Exit) would escape as a traceback: errors here print and exit directly.
    try:
        app()
    except (ConfigError, SpecError) as exc:
        exit_with(str(exc), EXIT_INVALID)
    except CoordinatorError as exc:
        exit_with(str(exc), EXIT_FAILURE)
    except Exception as exc:  # a bug of ours or of a library: a message and exit 2, the traceback only on request
        if os.environ.get("COORDINATOR_TRACEBACK"):
            traceback.print_exc()
        exit_with(
            f"unexpected {type(exc).__name__}: {exc} (a bug of coordinator: please report it with the command; "
            "COORDINATOR_TRACEBACK=1 prints the traceback)",
            EXIT_INVALID,
        )
    sys.exit(0)
