"""Commands about the Airflow side: ``check-plugin``.

The check itself (entry point, listener, Airflow's registration, one write through the hook) belongs to the plugin:
:func:`coordinator.airflow_plugin.check_plugin`. This module parses the options and prints the progress; a
ConfigError exits 2 (an installation or configuration problem), any other failure 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coordinator.airflow_plugin import INSTANCE_ENV, check_plugin
from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, EtcdOpt, PrefixOpt, app, build_settings, fail, out
from coordinator.errors import ConfigError, CoordinatorError


class _Printer:
    """check-plugin's progress on stdout: ``ok`` steps in green, notes in yellow, results as plain text."""

    def ok(self, message: str) -> None:
        out.print(f"[green]ok[/]    {message}", markup=True, highlight=False)

    def note(self, message: str) -> None:
        out.print(f"[yellow]note[/]  {message}", markup=True)

    def info(self, message: str) -> None:
        out.print(message, markup=False, highlight=False)  # settings name "[coordinator]": not rich markup


@app.command("check-plugin")
def check_plugin_command(
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    instance: Annotated[
        str | None,
        typer.Option("--instance", help=f"this Airflow's instance name [env {INSTANCE_ENV}, default default]"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the key and value instead of writing")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="leave the check's key in etcd (default: delete it)")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the write", min=0.1)] = 10.0,
) -> None:
    """Verify the Airflow plugin in this environment: entry point, listener, Airflow registration, one write."""
    build_settings(etcd_endpoints=etcd, prefix=prefix)  # the flags' own validation: exit 2 naming the bad one
    given = (("etcd_endpoints", etcd), ("prefix", prefix), ("instance", instance))
    flags = {option: value for option, value in given if value}
    try:
        check_plugin(flags, _Printer(), dry_run=dry_run, keep=keep, timeout_s=timeout)
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID)
    except CoordinatorError as exc:
        fail(str(exc), EXIT_FAILURE)
