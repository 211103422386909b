"""``coordinator check-airflow INSTANCE``: prove that the watcher can reach and authenticate to one Airflow instance.

The check itself lives with the Airflow adapter (:func:`coordinator.airflow.check.check_airflow`); this module reads
the instances, prints each step and maps the outcome to the exit code: 0 all steps passed, 1 a step failed (DNS, TLS,
connection, 401, 403, wrong API version), 2 bad configuration (unknown instance, invalid instances file or auth).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from coordinator.airflow.check import CheckFailed, check_airflow
from coordinator.cli.app import (
    EXIT_FAILURE,
    EXIT_INVALID,
    SETUP,
    AirflowUrlOpt,
    InstancesOpt,
    app,
    build_settings,
    fail,
    out,
)
from coordinator.cli.engine_cmds import LogLevelOpt, setup_logging
from coordinator.errors import ConfigError


@app.command("check-airflow", rich_help_panel=SETUP)
def check_airflow_command(
    instance: Annotated[str, typer.Argument(metavar="INSTANCE", help="instance name ('default' for --airflow-url)")],
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="how long each request may take", min=0.1)
    ] = 10.0,
    log_level: LogLevelOpt = "ERROR",
) -> None:
    """Read-only check of one Airflow instance: DNS, TLS, API version, auth, permission to read DAGs and runs.

    Exit 0 when every step passes, 1 when one fails, 2 for a configuration problem (unknown instance, bad instances
    file).
    """
    # The adapter's own warnings repeat what the failing step says; the step's message is the answer.
    setup_logging(log_level)
    settings = build_settings(airflow_url=airflow_url, instances_file=instances)
    try:
        configured = settings.instances()
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID)
    if instance not in configured:
        known = ", ".join(sorted(configured)) or "none (set --instances or --airflow-url)"
        fail(f"unknown instance {instance!r}; configured: {known}", EXIT_INVALID)

    def step(message: str) -> None:
        out.print(f"[green]ok[/]    {message}", markup=True, highlight=False, soft_wrap=True)

    try:
        asyncio.run(check_airflow(instance, configured[instance], step, timeout_s=timeout))
    except CheckFailed as exc:
        fail(str(exc), EXIT_FAILURE)
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID)
