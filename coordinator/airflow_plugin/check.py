"""The plugin's self-check behind ``coordinator check-plugin``: the path Airflow walks, step by step, in this process.

Airflow only logs a plugin that fails to import, so a broken installation looks like "nothing happens". This check
walks the same path Airflow does, in the current environment, and says which step failed. First it resolves the
plugin's settings as the listener does (:mod:`coordinator.airflow_plugin.config`; the command's flags win) and prints
one ``source`` line per setting: the variable, ``[coordinator]`` option or connection field it came from, never a
value. Then:

1. the ``airflow.plugins`` entry point ``etcd_coordinator`` is installed (ConfigError if not: an installation
   problem);
2. it imports and is an ``AirflowPlugin`` whose listener implements the three dag-run hooks (PluginCheckError);
3. Airflow's own listener manager registers that listener (PluginCheckError);
4. the hook, called through Airflow's hook machinery with a stand-in DagRun, records the run (PluginCheckError if
   etcd could not be written within the timeout). A dry run reports the key and value instead of writing them.
5. the task hook (``on_task_instance_success``), called the same way with a stand-in task instance of the same run,
   hands its state to the writer, which reads the adopted graph's named tasks from etcd (task-level upstreams). The
   stand-in task is never named, so nothing is written for it; the check reports how many tasks the graph names.
   A dry run reports the task key instead.
6. the wait of a scheduled dependent (``permit_wait``, what Airflow's triggerer runs) reaches etcd from this process:
   its trigger imports, and its shared connection reads ``{prefix}/permits/`` and has a watch of it created (nothing
   written). Run the check in the triggerer's environment to prove the triggerer's settings.

Rules: a step that fails on an exception says it with its underlying cause (``failure``): Airflow's own configuration
often fails behind a wrapper (``ValueError: Unable to configure formatter 'airflow'`` raised from ``ModuleNotFoundError:
No module named 'asyncpg'``), and the wrapper alone names the symptom, not what to install. The stand-in run belongs
to a DAG no pipeline uses (``coordinator_check_plugin``); its key is deleted again after the check unless ``keep``.
Other plugins' listeners are never called with the stand-in. Airflow is imported only inside the steps that need it,
so importing this module (and the CLI) loads no Airflow.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from coordinator.airflow_plugin.config import resolve_now
from coordinator.airflow_plugin.records import INSTANCE_ENV, RunStateWrite, WriterConfig, connect_store
from coordinator.airflow_plugin.writer import BackgroundWriter, RecordingWriter, install_writer
from coordinator.core.activation import load_activation
from coordinator.core.model import NodeId, canonical_partition, partition_datetime
from coordinator.errors import (
    ConfigError,
    CoordinatorError,
    PluginCheckError,
    StoreError,
    StoreTlsError,
    StoreUnavailable,
)

ENTRY_POINT_GROUP = "airflow.plugins"
ENTRY_POINT_NAME = "etcd_coordinator"
HOOKS = ("on_dag_run_running", "on_dag_run_success", "on_dag_run_failed")
TASK_HOOKS = ("on_task_instance_running", "on_task_instance_success", "on_task_instance_failed")
CHECK_TASK_ID = "coordinator_check_task"
CHECK_DAG_ID = "coordinator_check_plugin"
# A partition no real pipeline is likely to use, so the check never looks like real data to a watcher.
CHECK_PARTITION = "2000-01-01T00:00:00Z"
#: How long the check waits for the etcd connection (at least; a longer --timeout counts too): the first lookup in a
#: process imports Airflow's models (~2 s here) and may then ask a secrets backend across the network.
CONNECTION_TIMEOUT_S = 15.0
#: How long the check waits for etcd's first answer: a healthy etcd answers in milliseconds; 3 s covers a slow one
#: without making a wrong address cost more than a few seconds.
REACH_TIMEOUT_S = 3.0
#: The adopted graph could not be read (permission): its instances are unknown, not absent.
UNKNOWN: frozenset[str] = frozenset({"?"})


class Reporter(Protocol):
    """Where the check tells its progress (the CLI prints it)."""

    def ok(self, message: str) -> None: ...

    def note(self, message: str) -> None: ...

    def info(self, message: str) -> None: ...


@dataclass
class FakeDagRun:
    """The attributes of Airflow's DagRun that the listener reads."""

    dag_id: str
    run_id: str
    logical_date: datetime | None
    clear_number: int = 0
    state: str = "success"
    run_type: str = "manual"
    start_date: datetime | None = None
    end_date: datetime | None = None
    conf: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeTaskInstance:
    """The attributes of Airflow 3's RuntimeTaskInstance that the listener reads (its DAG run in the run context)."""

    dag_id: str
    task_id: str
    run_id: str
    _ti_context_from_server: Any
    try_number: int = 1
    map_index: int = -1
    state: str = "success"
    start_date: datetime | None = None
    end_date: datetime | None = None


@dataclass
class _RunContext:
    """Airflow 3's TIRunContext: where the task runner keeps the task's DAG run."""

    dag_run: FakeDagRun


def check_plugin(flags: Mapping[str, str], report: Reporter, *, dry_run: bool, keep: bool, timeout_s: float) -> None:
    """Run the four steps of the module docstring; raise ConfigError or PluginCheckError at the first that fails.

    ``flags``: the command's ``--etcd``, ``--prefix`` and ``--instance`` given, keyed by option name
    (``etcd_endpoints``, ``prefix``, ``instance``); they win over the plugin's own settings, which are resolved as
    the listener resolves them (environment, ``[coordinator]``, the etcd connection, defaults).
    """
    config = _resolve(flags, timeout_s, report)
    ep = _find_entry_point()
    dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
    report.ok(f"entry point {ENTRY_POINT_GROUP}:{ep.name} -> {ep.value}{dist}")
    listener = _load_listener(ep)
    report.ok(f"AirflowPlugin with listener {type(listener).__name__} ({', '.join(HOOKS)})")
    hook = _registered_hook(listener)
    report.ok("registered by Airflow's listener manager")

    now = datetime.now(UTC).replace(microsecond=0)
    run = FakeDagRun(
        dag_id=CHECK_DAG_ID,
        # A new run id each time: the write is then always a real one, never skipped as an identical rewrite.
        run_id=f"check_plugin__{now.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}",
        logical_date=partition_datetime(canonical_partition(CHECK_PARTITION)),
        start_date=now,
        end_date=now,
    )
    ti = FakeTaskInstance(
        dag_id=CHECK_DAG_ID,
        task_id=CHECK_TASK_ID,
        run_id=run.run_id,
        _ti_context_from_server=_RunContext(run),
        start_date=now,
        end_date=now,
    )
    task_hook = _hook_caller(hook_plugins(listener), listener, "on_task_instance_success")
    if dry_run:
        _dry_run(config, hook, task_hook, run, ti, report)
        return
    # One quick question first: an unreachable etcd is one line within seconds, not a writer retrying for the whole
    # timeout (and logging every retry) before saying the same thing.
    instances = asyncio.run(_reach(config, min(timeout_s, REACH_TIMEOUT_S)))
    _write(config, hook, task_hook, run, ti, timeout_s, keep, report)
    _check_instance(config, instances, report)
    _check_wait(config, timeout_s, report)


def _check_wait(config: WriterConfig, timeout_s: float, report: Reporter) -> None:
    """Step 6: the wait's trigger imports, and its connection reads and watches the permits (module docstring)."""
    try:
        from coordinator.airflow_plugin.permit_wait import PermitTrigger
    except Exception as exc:
        raise PluginCheckError(f"the wait's trigger does not import: {type(exc).__name__}: {exc}") from exc
    from coordinator.airflow_plugin.permit_hub import probe
    from coordinator.core.permit import permits_prefix

    async def bounded() -> int:
        async with asyncio.timeout(timeout_s):
            return await probe(config.etcd, config.keys)

    try:
        revision = asyncio.run(bounded())
    except (StoreError, TimeoutError, OSError) as exc:
        raise PluginCheckError(f"the wait (the triggerer's {PermitTrigger.__name__}) cannot watch etcd: {exc}") from exc
    report.ok(
        f"the wait of a scheduled dependent reaches etcd: read and watch of {permits_prefix(config.keys)} at revision "
        f"{revision} (what {PermitTrigger.__name__} does in Airflow's triggerer)"
    )


def _resolve(flags: Mapping[str, str], timeout_s: float, report: Reporter) -> WriterConfig:
    """The plugin's settings, and where each came from (names of variables and options, never a value)."""
    try:
        resolved = resolve_now(flags, timeout_s=max(timeout_s, CONNECTION_TIMEOUT_S))
    except StoreUnavailable as exc:
        raise PluginCheckError(str(exc)) from exc
    for line in resolved.describe():
        report.info(f"source {line}")
    return resolved.writer


def _find_entry_point() -> EntryPoint:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ENTRY_POINT_NAME]
    if not found:
        raise ConfigError(
            f"no '{ENTRY_POINT_NAME}' entry point in group '{ENTRY_POINT_GROUP}': the coordinator package is not "
            "installed in this Python environment (install it where Airflow runs: pip install "
            "airflow-etcd-coordinator)"
        )
    return found[0]


def underlying(exc: BaseException) -> BaseException | None:
    """The exception at the end of ``exc``'s chain (its ``__cause__``, else its ``__context__``, followed to the last
    one), or None when nothing caused it; a chain that loops stops where it would repeat."""
    seen = {id(exc)}
    last: BaseException | None = None
    current = exc.__cause__ or exc.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        last = current
        current = current.__cause__ or current.__context__
    return last


def failure(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, and of its underlying cause when there is one (``underlying``): what to fix is
    usually said there (a module missing from this environment)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = underlying(exc)
    if cause is None:
        return text
    said = f"{type(cause).__name__}: {cause}"
    hint = ""
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        # Airflow's own dependency, usually of an extra (asyncpg: apache-airflow[postgres]).
        hint = f" (install {cause.name.split('.')[0]} where Airflow runs, or the Airflow extra that brings it)"
    return f"{text}; caused by {said}{hint}"


def _load_listener(ep: EntryPoint) -> Any:
    """Import the plugin class like Airflow does and return its listener; fail with the step that broke."""
    try:
        plugin_cls = ep.load()
    except Exception as exc:
        raise PluginCheckError(f"importing {ep.value} failed (Airflow would only log this): {failure(exc)}") from exc
    try:
        from airflow.plugins_manager import AirflowPlugin
    except ImportError as exc:
        raise ConfigError(f"Airflow is not importable in this environment: {failure(exc)}") from exc
    if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, AirflowPlugin)):
        raise PluginCheckError(f"{ep.value} is not an AirflowPlugin subclass")
    listeners = list(getattr(plugin_cls, "listeners", []) or [])
    for listener in listeners:
        # pluggy's HookimplMarker("airflow") marks implementations with an ``airflow_impl`` attribute.
        if all(getattr(getattr(listener, hook, None), "airflow_impl", None) is not None for hook in HOOKS + TASK_HOOKS):
            return listener
    raise PluginCheckError(
        f"{ep.value} has no listener implementing {', '.join(HOOKS + TASK_HOOKS)} (listeners: {listeners!r})"
    )


def hook_plugins(listener: Any) -> tuple[Any, list[Any]]:
    """Airflow's own listener manager and its registered plugins; it must have registered the listener."""
    try:
        from airflow.listeners.listener import get_listener_manager

        manager = get_listener_manager()
        plugins = manager.pm.get_plugins()
    except Exception as exc:
        raise PluginCheckError(f"Airflow's listener manager could not load plugins: {failure(exc)}") from exc
    if listener not in plugins:
        raise PluginCheckError(
            "Airflow did not register the coordinator listener; check `airflow plugins` and the plugin import "
            "errors in the scheduler log"
        )
    return manager, list(plugins)


def _hook_caller(found: tuple[Any, list[Any]], listener: Any, name: str) -> Any:
    # Only our listener: other plugins' listeners (lineage, alerting) must not see the stand-in run.
    manager, plugins = found
    return manager.pm.subset_hook_caller(name, remove_plugins=[p for p in plugins if p is not listener])


def _registered_hook(listener: Any) -> Any:
    """Airflow's own listener manager must have registered the listener; return a hook caller for ours only."""
    return _hook_caller(hook_plugins(listener), listener, "on_dag_run_success")


def _dry_run(
    config: WriterConfig, hook: Any, task_hook: Any, run: FakeDagRun, ti: FakeTaskInstance, report: Reporter
) -> None:
    recorder = RecordingWriter(config)
    previous = install_writer(recorder)
    try:
        hook(dag_run=run, msg="coordinator check-plugin --dry-run")
        task_hook(previous_state=None, task_instance=ti)
    finally:
        install_writer(previous)
    if len(recorder.items) != 2:
        raise PluginCheckError(f"the hooks recorded {len(recorder.items)} records instead of 2")
    item, task_item = recorder.items
    if not isinstance(item, RunStateWrite):
        raise PluginCheckError(f"the run hook recorded {item.describe()} instead of a run state")
    report.info(f"plugin OK (dry run): would write {item.key}")
    report.info(item.record.model_dump_json(exclude_none=True))
    report.info(f"task hook OK (dry run): would write {task_item.key} if the adopted graph named the task")


def _write(
    config: WriterConfig,
    hook: Any,
    task_hook: Any,
    run: FakeDagRun,
    ti: FakeTaskInstance,
    timeout_s: float,
    keep: bool,
    report: Reporter,
) -> None:
    writer = BackgroundWriter(config)
    previous = install_writer(writer)
    try:
        started = time.perf_counter()
        hook(dag_run=run, msg="coordinator check-plugin")
        hook_ms = (time.perf_counter() - started) * 1000
        flushed = writer.flush(timeout_s)
        if flushed:
            # The task hook waits for its write itself (the stand-in is a task process's instance), then the writer
            # has read the named tasks from etcd: it never names the check's task, so nothing more is written.
            task_hook(previous_state=None, task_instance=ti)
            flushed = writer.flush(timeout_s)
    finally:
        writer.close(1.0)
        install_writer(previous)
    endpoints = settings_text(config)
    if writer.stats.submitted < 1:
        raise PluginCheckError(f"the hook did not hand the run to the writer (stats: {writer.stats})")
    if not flushed or writer.last_written is None:
        raise PluginCheckError(
            f"the hook ran ({hook_ms:.1f} ms) but the record did not reach etcd at {endpoints} within "
            f"{timeout_s:g} s: {writer.last_error or 'no error reported'}"
        )
    key, revision = writer.last_written
    report.ok(f"hook returned in {hook_ms:.2f} ms; the background writer wrote revision {revision}")
    named = writer.task_names.cached()
    if writer.stats.submitted != 2 or writer.stats.not_named != 1 or named is None:
        raise PluginCheckError(f"the task hook's state was not handled as expected (stats: {writer.stats})")
    report.ok(
        f"task hook handled a task state; the adopted graph names {len(named)} task(s) to record "
        f"(upstream_tasks of {config.keys.config_key('graph')})"
    )
    if not keep:
        try:
            asyncio.run(_delete(config, key))
        except CoordinatorError as exc:
            report.note(f"could not delete the check's key again: {exc}")
    suffix = "" if keep else " (deleted again; --keep leaves it)"
    report.info(f"plugin OK: wrote {key}{suffix}")


async def _reach(config: WriterConfig, timeout_s: float) -> frozenset[str] | None:
    """Ask etcd once (one attempt per endpoint, ``timeout_s`` each) and read the adopted graph's instance names
    (None: no graph adopted, or its value unreadable). PluginCheckError naming the setting when etcd does not answer.
    """
    from coordinator.etcd import EtcdStore  # gRPC is loaded only by the steps that talk to etcd

    quick = config.etcd.model_copy(update={"timeout_s": timeout_s})
    try:
        store = await EtcdStore.connect(quick, quick=True)
    except StoreTlsError as exc:
        raise PluginCheckError(f"did not reach etcd at {settings_text(config)}: {exc}; fix: {exc.fix}") from exc
    except StoreUnavailable as exc:
        raise PluginCheckError(
            f"did not reach etcd at {settings_text(config)} (asked once, {timeout_s:g} s deadline: {exc}); set "
            "COORDINATOR_ETCD_ENDPOINTS (or --etcd) to where etcd listens, in the environment of Airflow's "
            "scheduler too"
        ) from exc
    try:
        graph = await store.get(config.keys.config_key("graph"), retry=False)
    except StoreError:  # e.g. a plugin role that may only write {prefix}/runs/: the write step decides, not this
        return UNKNOWN
    finally:
        await store.close()
    if graph is None:
        return None
    try:
        activation = load_activation(graph.value)
    except ValueError:
        return None
    return frozenset(NodeId.parse(q).instance for q in activation.nodes)


def _check_instance(config: WriterConfig, instances: frozenset[str] | None, report: Reporter) -> None:
    """Warn when this Airflow's instance name is one no adopted graph knows: its records would be read by nobody."""
    where = config.keys.prefix
    if instances is UNKNOWN:
        report.note(f"could not read {config.keys.config_key('graph')} (no read permission?): whether a watcher "
                    f"reads instance {config.instance!r} is unchecked; `coordinator doctor` checks it")  # fmt: skip
    elif instances is None:
        report.note(f"no graph is adopted under {where} yet: start a watcher (`coordinator watch`) so that it "
                    f"reads what instance {config.instance!r} records")  # fmt: skip
    elif config.instance not in instances:
        report.note(
            f"instance {config.instance!r} is not in the graph adopted under {where} (it knows: "
            f"{', '.join(sorted(instances))}): no watcher reads the run states this Airflow records. Set "
            f"{INSTANCE_ENV} (or [coordinator] instance, AIRFLOW__COORDINATOR__INSTANCE) to the instance name "
            "dependencies.json uses for this Airflow"
        )


def settings_text(config: WriterConfig) -> str:
    return ",".join(f"{'https' if e.tls else 'http'}://{e.host}:{e.port}" for e in config.etcd.endpoints)


async def _delete(config: WriterConfig, key: str) -> None:
    store = await connect_store(config.etcd)
    try:
        await store.delete(key)
    finally:
        await store.close()
