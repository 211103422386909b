"""The ``coordinator`` console script: every command module imported for its registrations on the app, then the app.

Apart from ``app.py`` so that no command module is imported by the module it imports its ``app`` from.
"""

from __future__ import annotations

import os
import sys
import traceback

from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, app, exit_with
from coordinator.errors import ConfigError, CoordinatorError, SpecError


def load_commands() -> None:
    """Import every command module for its registrations on ``app`` (``main()``, the reference page and the tests
    see the same commands)."""
    from coordinator.cli import (  # noqa: F401
        airflow_cmds,
        asset_cmds,
        budget_cmds,
        check_airflow_cmds,
        diff_cmds,
        doctor_cmds,
        engine_cmds,
        flap_cmds,
        import_cmds,
        incident_cmds,
        lineage_cmds,
        probe_cmds,
        prune_cmds,
        rerun_cmds,
        roles_cmds,
        spec_cmds,
        state_cmds,
        trigger_cmds,
    )


def main() -> None:
    """Console-script entry point."""
    # gRPC's C core writes lines of its own to stderr, outside our log format ("I1126 21:46:21.285947 14554
    # ssl_transport_security.cc:2563] Handshake failed ..." for every failed TLS handshake, at INFO). Each such failure
    # reaches the operator as our own error with its fix (coordinator.etcd.tls_hint); the C core keeps its ERROR lines.
    # It reads the variable once, when grpc is first imported: before load_commands. An operator's own value wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    load_commands()

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
