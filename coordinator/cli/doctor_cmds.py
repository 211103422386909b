"""``coordinator doctor``: every check a newcomer needs when something does not move, one line each, with the fix.

Rules:
- **Only probes.** This module only probes (settings and their sources, one quick etcd connection, one load of the
  prefix, a write-permission question that writes nothing, each Airflow instance through
  :func:`coordinator.watcher.instance_check.check_instance`); the verdicts are :func:`coordinator.diagnosis.diagnose`.
- **Fast when something is down.** Etcd gets one attempt per endpoint with a short deadline (ETCD_TIMEOUT_S), each
  Airflow instance a bounded check. Nothing is triggered, cleared, unpaused or written.
- **Never a traceback.** A bad setting, etcd down or Airflow down are verdicts. Exit 0 when no check fails, 1 otherwise.
- **Keys accepted.** Each keyed dependent of the graph in force (a ``key_format`` or ``segments``) is checked against
  its DAG's timetable in Airflow (``coordinator.core.key_acceptance``): one that refuses a ``partition_key`` fails
  ``partition keys <instance>`` with what to set where.
- **Partial roles.** Under a role that may not read the whole prefix (``coordinator roles``), doctor reads each key
  family it may read and lists the others; the checks that need them are skipped with that reason, never failed on
  missing facts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from coordinator.cli.app import (
    EXIT_FAILURE,
    INSPECT,
    AirflowUrlOpt,
    DepsOpt,
    EtcdOpt,
    InstancesOpt,
    PrefixOpt,
    app,
    fail,
    typed,
)
from coordinator.core.assets import AssetRoute, TargetAssets
from coordinator.core.holds import Hold
from coordinator.core.key_acceptance import KeyedDag, keyed_dependents, keyed_in_activation
from coordinator.core.model import KeyLayout, NodeId
from coordinator.diagnosis import (
    DoctorFacts,
    EtcdAlarm,
    LineageProbe,
    SettingSource,
    diagnose,
    passed,
    to_json,
    to_text,
)
from coordinator.errors import CoordinatorError, SpecError, StoreError, StoreTlsError
from coordinator.informer.holds import read_holds
from coordinator.informer.presence_value import InstanceCheck
from coordinator.informer.read_model import READERS, Scope, StoreModel, load
from coordinator.lineage.status import receiver_status
from coordinator.runtime.settings import Settings
from coordinator.runtime.spec_file import load_spec
from coordinator.writers.roles import key_families

#: etcd's first answer: milliseconds when healthy; 3 s covers a slow one and keeps a wrong address cheap.
ETCD_TIMEOUT_S = 3.0
#: Each Airflow request of the instance checks: a healthy API answers in well under a second.
AIRFLOW_TIMEOUT_S = 5.0

#: (field, flag) of the settings doctor shows, in that order; secrets (``diagnosis``'s **Every problem has a fix**) show
#: only their source.
SHOWN = (
    ("etcd_endpoints", "--etcd"),
    ("prefix", "--prefix"),
    ("deps", "--deps"),
    ("etcd_username", None),
    ("etcd_password", None),
    ("etcd_password_file", None),
    ("etcd_ca_file", None),
    ("etcd_cert_file", None),
    ("etcd_key_file", None),
    ("airflow_url", "--airflow-url"),
    ("airflow_username", None),
    ("airflow_password", None),
    ("airflow_password_file", None),
    ("instances_file", "--instances"),
)
SECRETS = {"etcd_password", "airflow_password"}


def setting_sources(given: dict[str, Any], settings: Settings | None) -> list[SettingSource]:
    """Each shown setting: its value (secrets: only set / not set) and where it came from (flag, env or default)."""
    result: list[SettingSource] = []
    for name, flag in SHOWN:
        env = f"COORDINATOR_{name.upper()}"
        if name in given:
            source = flag or "flag"
        elif env in os.environ:
            source = f"env {env}"
        else:
            source = "default"
        value = getattr(settings, name, None) if settings is not None else given.get(name, os.environ.get(env))
        if name in SECRETS:
            shown = "(set)" if value else "(not set)"
        else:
            shown = str(value) if value not in (None, "") else "(not set)"
        if source == "default" and shown == "(not set)":
            continue  # optional and absent: nothing to report
        result.append(SettingSource(name=name, shown=shown, source=source))
    return result


@app.command(rich_help_panel=INSPECT)
def doctor(
    ctx: typer.Context,
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            metavar="INSTANCE",
            show_default="every instance of the graph",
            help="check only this Airflow instance (and its intents)",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json", help="output format")] = "text",
    etcd: EtcdOpt = None,
    prefix: PrefixOpt = None,
    deps: DepsOpt = None,
    airflow_url: AirflowUrlOpt = None,
    instances: InstancesOpt = None,
) -> None:
    """Check everything the coordinator needs, in order, one line each with the fix: the first thing to run when
    something does not move. Exit 0 when no check fails, 1 when one does."""
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    # Only what was typed counts as a flag: a value typer read from the environment is reported as the environment's.
    flags = {"etcd": "etcd_endpoints", "prefix": "prefix", "deps": "deps", "airflow_url": "airflow_url",
             "instances": "instances_file"}  # fmt: skip
    values = {"etcd": etcd, "prefix": prefix, "deps": deps, "airflow_url": airflow_url, "instances": instances}
    given = {flags[k]: v for k, v in values.items() if v is not None and typed(ctx, k)}
    # Every failure is a verdict in the output; the adapters' own warning lines would only repeat them.
    logging.getLogger("coordinator").setLevel(logging.CRITICAL)
    facts = asyncio.run(gather(given, instance))
    checks = diagnose(facts, datetime.now(UTC))
    if fmt == "json":
        typer.echo(json.dumps(to_json(checks), indent=2))
    else:
        for line in to_text(checks):
            typer.echo(line)
    if not passed(checks):
        raise typer.Exit(EXIT_FAILURE)


async def gather(given: dict[str, Any], only: str | None) -> DoctorFacts:
    """**Only probes**: everything diagnose needs, probed in order; a failed step leaves its facts None."""
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return DoctorFacts(
            settings=setting_sources(given, None),
            prefix=str(given.get("prefix", "?")),
            config_error=f"invalid configuration: {problems}",
        )
    facts = DoctorFacts(
        settings=setting_sources(given, settings),
        prefix=settings.prefix,
        deps=str(settings.deps),
        only_instance=only,
        etcd_user=settings.etcd_username,
    )
    try:
        facts.local_graph = load_spec(settings.deps)
    except (SpecError, OSError) as exc:
        facts.local_error = "\n".join(exc.problems) if isinstance(exc, SpecError) else str(exc)
    try:
        etcd = settings.etcd()
    except CoordinatorError as exc:
        facts.config_error = str(exc)
        return facts
    facts.etcd_endpoints = settings.etcd_endpoints
    facts.etcdctl = etcdctl_words(settings)
    await _etcd_facts(facts, settings, etcd.model_copy(update={"timeout_s": ETCD_TIMEOUT_S}))
    try:
        configured = settings.instances()
    except CoordinatorError as exc:
        facts.config_error = str(exc)
        configured = {}
    graph = _graph_in_force(facts)
    if graph is not None:
        # An instance the file declares "kind": "external" has no Airflow to ask (diagnosis names it instead).
        external = facts.local_graph.external_instances if facts.local_graph is not None else frozenset()
        names = sorted(n for n in graph if (only is None or n == only) and n not in external)
        if only is not None and only not in graph and only not in external:
            names = [only]
        facts.instances = await _instance_facts(
            names, graph, configured, settings.instances_file, _keyed_in_force(facts), str(settings.deps)
        )
    if facts.local_graph is not None and facts.local_graph.asset_routes:
        await _asset_facts(facts, facts.local_graph.asset_routes, configured)
    if facts.local_graph is not None and facts.local_graph.lineage_jobs:
        facts.lineage = await _lineage_facts()
    return facts


async def _lineage_facts() -> LineageProbe:
    """The OpenLineage receiver's status (semantics `lineage-receiver`), with the token of
    COORDINATOR_LINEAGE_TOKEN_FILE."""
    url = os.environ.get("COORDINATOR_LINEAGE_URL", "")
    if not url:
        return LineageProbe(url="")
    token_file = os.environ.get("COORDINATOR_LINEAGE_TOKEN_FILE")
    return await asyncio.to_thread(receiver_status, url, token_file, AIRFLOW_TIMEOUT_S)


async def _asset_facts(facts: DoctorFacts, routes: Sequence[AssetRoute], configured: dict[str, Any]) -> None:
    """What each route target holds (semantics `asset-routes`), each read bounded by AIRFLOW_TIMEOUT_S."""
    from coordinator.cli.spec_cmds import target_assets

    found: dict[str, TargetAssets] = {}
    errors: dict[str, str] = {}
    for name in sorted({t for route in routes for t in route.targets}):
        instance = configured.get(name)
        if instance is None:
            errors[name] = "no Airflow is configured for it"
            continue
        try:
            found[name] = await asyncio.wait_for(target_assets(name, instance), AIRFLOW_TIMEOUT_S * 2)
        except (CoordinatorError, TimeoutError) as exc:
            errors[name] = f"cannot list its assets: {exc or type(exc).__name__}"
    facts.asset_targets, facts.asset_errors = found, errors


def _graph_in_force(facts: DoctorFacts) -> dict[str, list[str]] | None:
    """Instance -> DAG ids of the local graph, else of the adopted one; None when neither is known."""
    if facts.local_graph is not None:
        return _by_instance(facts.local_graph.dags)
    view = facts.view
    if view is not None and view.activation is not None:
        return _by_instance(NodeId.parse(q) for q in view.activation.nodes)
    return None


def _keyed_in_force(facts: DoctorFacts) -> tuple[KeyedDag, ...]:
    """The keyed dependents of the graph :func:`_graph_in_force` names: their DAGs must accept a partition key."""
    if facts.local_graph is not None:
        return keyed_dependents(facts.local_graph)
    view = facts.view
    if view is not None and view.activation is not None:
        return keyed_in_activation(view.activation)
    return ()


def _by_instance(nodes: Iterable[NodeId]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for node in nodes:
        result.setdefault(node.instance, []).append(node.dag_id)
    return {name: sorted(dags) for name, dags in result.items()}


async def _etcd_facts(facts: DoctorFacts, settings: Settings, etcd: Any) -> None:
    from coordinator.etcd import EtcdStore  # keep `coordinator --help` free of the gRPC import
    from coordinator.etcd.probe import alarms, write_allowed

    try:
        store = await EtcdStore.connect(etcd, quick=True)
    except StoreTlsError as exc:
        facts.etcd_error, facts.etcd_fix = str(exc), exc.fix
        return
    except CoordinatorError as exc:
        facts.etcd_error = str(exc)
        return
    keys = settings.keys
    try:
        facts.etcd_revision = await store.current_revision(retry=False)
        try:
            found = await alarms(store, ETCD_TIMEOUT_S)
            facts.etcd_alarms = [EtcdAlarm(a.name, a.member) for a in found]
        except StoreError as exc:
            facts.alarms_error = str(exc)
        model: StoreModel | None = None
        try:
            model = await load(store, keys, READERS)
            facts.read_ok = True
        except StoreError as exc:
            if not is_denied(exc):
                facts.read_ok, facts.permission_error = False, str(exc)
                return
            # **Partial roles**: a role that may read only part of the prefix (a plugin's): read what it may, name the
            # rest.
            model = await load(store, keys, READERS, readable_parts(keys), readable_only=is_denied)
            facts.unreadable = tuple(f for f, _ in key_families(keys) if f in model.unread)  # in the layout's order
            facts.read_ok = len(facts.unreadable) < len(key_families(keys))
            facts.permission_error = str(exc)
            if not facts.read_ok:
                return
        try:
            facts.write_ok = await write_allowed(store, keys.config_key("doctor"), ETCD_TIMEOUT_S)
        except StoreError as exc:
            facts.write_ok, facts.permission_error = None, str(exc)
        facts.view, facts.leader, facts.watchers = model.view, model.leader, model.watchers
        if keys.holds not in facts.unreadable:
            facts.holds, facts.holds_error = await _holds(store, keys)
        facts.bad_values = model.bad_values()
        # The floor as the view holds it (read with the rest); an unparsable one is an error to fix first.
        floor_key = keys.config_key("retention")
        problem = model.view.problems.get(floor_key)
        if problem is not None:
            facts.floor_error = f"{floor_key} holds an {problem.split(';')[0]}; rewrite or delete it"
        facts.floor = model.view.floor if problem is None else None
    except CoordinatorError as exc:
        facts.etcd_error = facts.etcd_error or str(exc)
    finally:
        await store.close()


async def _holds(store: Any, keys: KeyLayout) -> tuple[list[Hold] | None, str | None]:
    """Operators' holds through the informer (``read_holds``: no reader lists the store on its own); a refusal or an
    error is the check's skip reason, never a traceback."""
    try:
        index, _ = await read_holds(store, keys)
    except StoreError as exc:
        return None, f"the holds could not be read: {exc}"
    return list(index.holds.values()), None


def etcdctl_words(settings: Settings) -> str:
    """``etcdctl`` with the flags that reach the cluster doctor asked, as this user: pasted before a subcommand."""
    words = ["etcdctl", f"--endpoints={settings.etcd_endpoints}"]
    if settings.etcd_username:
        words.append(f"--user={settings.etcd_username}")  # etcdctl asks for the password
    for flag, path in (("cacert", settings.etcd_ca_file), ("cert", settings.etcd_cert_file),
                       ("key", settings.etcd_key_file)):  # fmt: skip
        if path is not None:
            words.append(f"--{flag}={path}")
    return " ".join(words)


def is_denied(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "permission denied" in text or "permission_denied" in text


def readable_parts(keys: KeyLayout) -> Scope:
    """**Partial roles**: each key family of the layout as a part of its own (``writers.roles.key_families``, the grain
    roles are granted at): a prefix read as one snapshot, a single key read as a key."""
    families = key_families(keys)
    return Scope(
        tuple(f for f, is_prefix in families if is_prefix), tuple(f for f, is_prefix in families if not is_prefix)
    )


async def _instance_facts(
    names: Sequence[str],
    graph: dict[str, list[str]],
    configured: dict[str, Any],
    instances_file: Path | None,
    keyed: Sequence[KeyedDag],
    deps: str,
) -> list[InstanceCheck]:
    from coordinator.watcher.instance_check import check_instance

    checks = (
        check_instance(n, configured.get(n), graph.get(n, []), timeout_s=AIRFLOW_TIMEOUT_S, configured=configured,
                       instances_file=instances_file, keyed=[k for k in keyed if k.node.instance == n], deps=deps)
        for n in names
    )  # fmt: skip
    return list(await asyncio.gather(*checks))
