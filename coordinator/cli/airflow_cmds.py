"""Commands about the Airflow side: ``check-plugin``.

The check itself (entry point, listener, Airflow's registration, one write through the hook) belongs to the plugin:
:func:`coordinator.airflow_plugin.check_plugin`. This module parses the options and prints the progress; a
ConfigError exits 2 (an installation or configuration problem), any other failure 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coordinator.airflow_plugin import INSTANCE_ENV, check_plugin
from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, SETUP, app, build_settings, fail, out, setting_option, typed
from coordinator.core.model import DEFAULT_INSTANCE, DEFAULT_PREFIX
from coordinator.errors import ConfigError, CoordinatorError
from coordinator.runtime.settings import Settings


class _Printer:
    """check-plugin's progress on stdout: ``ok`` steps in green, notes in yellow, results as plain text."""

    def ok(self, message: str) -> None:
        out.print(f"[green]ok[/]    {message}", markup=True, highlight=False)

    def note(self, message: str) -> None:
        out.print(f"[yellow]note[/]  {message}", markup=True)

    def info(self, message: str) -> None:
        out.print(message, markup=False, highlight=False)  # settings name "[coordinator]": not rich markup


#: Where the plugin looks when neither the flag nor the environment variable is given (``airflow_plugin.config``'s
#: **Precedence**): Airflow's [coordinator] section, the etcd connection (etcd settings only), then the settings'
#: default.
_ENDPOINTS = Settings.model_fields["etcd_endpoints"].default
_PLUGIN_ENDPOINTS = f"[coordinator] etcd_endpoints, else the coordinator_etcd connection, else {_ENDPOINTS}"


@app.command("check-plugin", rich_help_panel=SETUP)
def check_plugin_command(
    ctx: typer.Context,
    etcd: Annotated[
        str | None,
        setting_option(
            "--etcd",
            field="etcd_endpoints",
            metavar="ENDPOINTS",
            shown=_PLUGIN_ENDPOINTS,
            help="etcd endpoints, comma-separated http(s)://host:port",
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        setting_option(
            "--prefix",
            field="prefix",
            metavar="PREFIX",
            shown=f"[coordinator] prefix, else {DEFAULT_PREFIX}",
            help="etcd key prefix",
        ),
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            metavar="INSTANCE",
            envvar=INSTANCE_ENV,
            show_envvar=True,
            show_default=f"[coordinator] instance, else {DEFAULT_INSTANCE}",
            help="this Airflow's instance name",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the key and value instead of writing")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="leave the check's key in etcd (without it: deleted)")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="how long to wait for the write", min=0.1)
    ] = 10.0,
) -> None:
    """Verify the Airflow plugin in this environment: entry point, listener, Airflow registration, one write.

    Exit 0 when every step passes, 2 for an installation or configuration problem, 1 when a step fails (etcd
    unreachable, the write refused).
    """
    build_settings(etcd_endpoints=etcd, prefix=prefix)  # the flags' own validation: exit 2 naming the bad one
    # Only typed values are flags: the plugin resolves the environment itself and reports it as the environment.
    given = (("etcd_endpoints", "etcd", etcd), ("prefix", "prefix", prefix), ("instance", "instance", instance))
    flags = {option: value for option, param, value in given if value and typed(ctx, param)}
    try:
        check_plugin(flags, _Printer(), dry_run=dry_run, keep=keep, timeout_s=timeout)
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID)
    except CoordinatorError as exc:
        fail(str(exc), EXIT_FAILURE)
