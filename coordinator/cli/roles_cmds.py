"""``coordinator roles``: the etcd roles and users of every component, printed as ``etcdctl`` commands.

Rules:
1. The matrix is :func:`coordinator.writers.roles.roles` (one place, derived from the key layout); this module only
   parses the options and prints. Nothing is sent to etcd: an administrator reviews and runs the output.
2. Instances come from ``--instance`` (repeatable), else from the local ``dependencies.json``; a bad name or a bad
   ``--writer`` exits 2 naming it.
3. OpenLineage receivers come from ``--lineage`` (repeatable: ``INSTANCE``, or ``NAME=INSTANCE,...`` for one receiver
   of several instances), else, when the instances came from ``dependencies.json``, one receiver of every instance
   its ``"openlineage"`` section names (``lineage serve`` without ``--instance`` writes them all). Two receivers of
   one role name exit 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from coordinator.cli.app import SETUP, DepsOpt, PrefixOpt, app, build_settings, fail
from coordinator.core.model import NAME_RE
from coordinator.errors import SpecError
from coordinator.runtime.spec_file import load_spec
from coordinator.writers.roles import LineageReceiver, OutsideWriter, commands, roles


@app.command("roles", rich_help_panel=SETUP)
def roles_command(
    instance: Annotated[
        list[str] | None,
        typer.Option(
            "--instance",
            metavar="INSTANCE",
            show_default="every instance of the graph",
            help="an Airflow instance whose plugin gets a role (repeat)",
        ),
    ] = None,
    writer: Annotated[
        list[str] | None,
        typer.Option(
            "--writer",
            metavar="NAME=INSTANCE/DAG",
            show_default="none",
            help="an outside writer of one DAG's run states (DAG_PREFIX* for a family; repeat)",
        ),
    ] = None,
    lineage: Annotated[
        list[str] | None,
        typer.Option(
            "--lineage",
            metavar="INSTANCE|NAME=INSTANCE,...",
            show_default="without --instance: one receiver of every instance the graph's openlineage section names",
            help="an OpenLineage receiver: INSTANCE, or NAME=INSTANCE,INSTANCE for one of several (repeat)",
        ),
    ] = None,
    secrets_dir: Annotated[
        str,
        typer.Option(
            "--secrets-dir", metavar="DIR", help="where each user's password file lives (read by etcdctl's stdin)"
        ),
    ] = "$SECRETS_DIR",
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
) -> None:
    """Print the etcdctl commands that create one role and user per component (plugin per instance, page,
    watcher, doctor, prune, backfill, outside writers, OpenLineage receivers). Passwords are read from files, never
    put on the command line."""
    settings = build_settings(prefix=prefix, deps=deps)
    names = list(instance or [])
    mapped: list[str] = []
    if not names:
        try:
            graph = load_spec(settings.deps)
        except (SpecError, OSError) as exc:
            fail(f"no --instance given and {settings.deps} cannot be read: {exc}")
        names = sorted({node.instance for node in graph.dags})
        mapped = sorted({job.instance for job in graph.lineage_jobs})
    for name in names:
        if not NAME_RE.match(name):
            fail(f"--instance {name!r} is not a valid instance name ([A-Za-z0-9_.-]+, not . or ..)")
    try:
        outside = [OutsideWriter.parse(w) for w in writer or []]
        receivers = [LineageReceiver.parse(r) for r in lineage or []]
    except ValueError as exc:
        fail(str(exc))
    if not receivers and mapped:
        receivers = [LineageReceiver(None, tuple(mapped))]
    seen: set[str | None] = set()
    for receiver in receivers:
        if receiver.name in seen:
            fail(f"--lineage: two receivers named {receiver.name!r} (one role each; name them NAME=INSTANCE,...)")
        seen.add(receiver.name)
    for line in commands(roles(settings.keys, names, outside, receivers), secrets_dir):
        typer.echo(line)
