"""``coordinator lineage serve`` (the OpenLineage receiver) and ``coordinator lineage token`` (a new producer token)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from coordinator.cli.app import DepsOpt, EtcdOpt, PrefixOpt, app, build_settings, err, fail, out, run_async
from coordinator.cli.engine_cmds import setup_logging
from coordinator.lineage.receiver import DEFAULT_MAX_BODY
from coordinator.lineage.service import DEFAULT_HTTP, DEFAULT_LISTEN, ReceiverOptions, run_receiver
from coordinator.lineage.tokens import hash_token, new_token
from coordinator.settings import ListenAddress, parse_listen

lineage = typer.Typer(
    name="lineage",
    help="OpenLineage jobs (dbt, Spark, Airflow's provider...) as upstreams: the receiver and its tokens.",
    no_args_is_help=True,
)
app.add_typer(lineage)


def _address(text: str, setting: str) -> ListenAddress | None:
    try:
        return parse_listen(text)
    except ValueError as exc:
        fail(f"{setting}: {exc}")


@lineage.command()
def serve(
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help=f"where producers POST events, HOST:PORT [env COORDINATOR_LINEAGE_LISTEN, default {DEFAULT_LISTEN}]",
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            help=f"listener for /metrics, /healthz, /readyz: HOST:PORT or off [env "
            f"COORDINATOR_LINEAGE_HTTP, default {DEFAULT_HTTP}]",
        ),
    ] = None,
    tokens: Annotated[
        Path | None,
        typer.Option(
            "--tokens",
            help="the tokens file: name, sha256 and namespaces per producer [env COORDINATOR_LINEAGE_TOKENS_FILE]",
        ),
    ] = None,
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance",
            help="an instance this receiver writes (repeat; its etcd role's) [env "
            "COORDINATOR_LINEAGE_INSTANCES, comma-separated; default: every instance the mapping names]",
        ),
    ] = None,
    max_body: Annotated[
        int | None,
        typer.Option("--max-body", help=f"largest request body in bytes, compressed or not [{DEFAULT_MAX_BODY}]"),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Receive OpenLineage run events over the HTTP transport and write them as run states (semantics rule 18)."""
    setup_logging(log_level)
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix, deps=deps)
    tokens_file = tokens or (Path(p) if (p := os.environ.get("COORDINATOR_LINEAGE_TOKENS_FILE")) else None)
    if tokens_file is None:
        fail("no tokens file: give --tokens or COORDINATOR_LINEAGE_TOKENS_FILE (`coordinator lineage token "
             "NAME --namespace NAMESPACE` makes an entry)")  # fmt: skip
    listen_at = _address(listen or os.environ.get("COORDINATOR_LINEAGE_LISTEN", DEFAULT_LISTEN), "--listen")
    if listen_at is None:
        fail("--listen: the receiver needs an address (off is for --http)")
    names = instance or [n for n in os.environ.get("COORDINATOR_LINEAGE_INSTANCES", "").split(",") if n.strip()]
    options = ReceiverOptions(
        listen=listen_at,
        http=_address(http or os.environ.get("COORDINATOR_LINEAGE_HTTP", DEFAULT_HTTP), "--http"),
        tokens_file=tokens_file,
        instances=frozenset(n.strip() for n in names) if names else None,
        max_body=max_body if max_body is not None else DEFAULT_MAX_BODY,
    )
    if options.max_body < 1024:
        fail(f"--max-body {options.max_body}: at least 1024 bytes (one event)")
    run_async(lambda: run_receiver(settings, options))


@lineage.command()
def token(
    name: Annotated[str, typer.Argument(help="who holds it, e.g. dbt-analytics (shown in logs, never the token)")],
    namespace: Annotated[
        list[str], typer.Option("--namespace", "-n", help="a job namespace (pattern) it may write; repeat")
    ],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="write the token to this file (mode 0600) instead of standard output"),
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
