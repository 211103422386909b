"""``coordinator lineage serve`` (the OpenLineage receiver) and ``coordinator lineage token`` (a new producer token)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from coordinator.cli.app import (
    RUN,
    SETUP,
    DepsOpt,
    EtcdOpt,
    PanelOrderGroup,
    PrefixOpt,
    app,
    build_settings,
    err,
    fail,
    out,
    run_async,
)
from coordinator.cli.engine_cmds import LogLevelOpt, setup_logging
from coordinator.lineage.receiver import DEFAULT_MAX_BODY
from coordinator.lineage.service import DEFAULT_HTTP, DEFAULT_LISTEN, ReceiverOptions, run_receiver
from coordinator.lineage.tokens import hash_token, new_token
from coordinator.runtime.settings import ListenAddress, parse_listen

lineage = typer.Typer(
    name="lineage",
    help="OpenLineage jobs (dbt, Spark, Airflow's provider...) as upstreams: the receiver and its tokens.",
    no_args_is_help=True,
    cls=PanelOrderGroup,
)
app.add_typer(lineage, rich_help_panel=RUN)


def _address(text: str, setting: str) -> ListenAddress | None:
    try:
        return parse_listen(text)
    except ValueError as exc:
        fail(f"{setting}: {exc}")


@lineage.command(rich_help_panel=RUN)
def serve(
    tokens: Annotated[
        Path,
        typer.Option(
            "--tokens",
            metavar="FILE",
            envvar="COORDINATOR_LINEAGE_TOKENS_FILE",
            show_envvar=True,
            help="the tokens file: name, sha256 and namespaces per producer (`coordinator lineage token NAME -n "
            "NAMESPACE` makes an entry)",
        ),
    ],
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            envvar="COORDINATOR_LINEAGE_LISTEN",
            show_envvar=True,
            help="where producers POST events",
        ),
    ] = DEFAULT_LISTEN,
    http: Annotated[
        str,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            envvar="COORDINATOR_LINEAGE_HTTP",
            show_envvar=True,
            help="listener for /metrics, /healthz, /readyz, or off",
        ),
    ] = DEFAULT_HTTP,
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance",
            metavar="INSTANCE",
            envvar="COORDINATOR_LINEAGE_INSTANCES",
            show_envvar=True,
            show_default="every instance the mapping names",
            help="an instance this receiver writes (repeat, or comma-separated; its etcd role's)",
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option("--max-body", metavar="BYTES", help="largest request body, compressed or not")
    ] = DEFAULT_MAX_BODY,
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Receive OpenLineage run events over the HTTP transport and write them as run states of the DAGs the
    dependencies file maps them to."""
    setup_logging(log_level)
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps)
    listen_at = _address(listen, "--listen")
    if listen_at is None:
        fail("--listen: the receiver needs an address (off is for --http)")
    # The variable is comma-separated (the chart joins its list); typer splits it on whitespace only.
    names = [n.strip() for item in instance or () for n in item.split(",") if n.strip()]
    options = ReceiverOptions(
        listen=listen_at,
        http=_address(http, "--http"),
        tokens_file=tokens,
        instances=frozenset(names) if names else None,
        max_body=max_body,
    )
    if options.max_body < 1024:
        fail(f"--max-body {options.max_body}: at least 1024 bytes (one event)")
    run_async(lambda: run_receiver(settings, options))


@lineage.command(rich_help_panel=SETUP)
def token(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="who holds it, e.g. dbt-analytics (shown in logs, never the token)")
    ],
    namespace: Annotated[
        list[str],
        typer.Option("--namespace", "-n", metavar="NAMESPACE", help="a job namespace (pattern) it may write; repeat"),
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            show_default="standard output",
            help="write the token to this file (mode 0600)",
        ),
    ] = None,
) -> None:
    """Make a producer token: the token for the producer's api_key, and the entry for the receiver's tokens file."""
    if not namespace:
        fail("give at least one --namespace the token may write")
    secret = new_token()
    entry = {"name": name, "sha256": hash_token(secret), "namespaces": namespace}
    if out_file is not None:
        try:
            fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            fail(f"{out_file}: {exc.strerror or exc} (the file must not exist yet)")
        with os.fdopen(fd, "w") as handle:
            handle.write(secret + "\n")
        err.print(f"token written to {out_file}")
    else:
        out.print(secret)
    err.print('add this entry to the tokens file\'s "tokens" list:')
    err.print(json.dumps(entry))
