"""Commands about the Airflow side: ``check-plugin``.

Airflow only logs a plugin that fails to import, so a broken installation looks like "nothing happens". This command
walks the same path Airflow does, in the current environment, and says which step failed:

1. the ``airflow.plugins`` entry point ``etcd_coordinator`` is installed (exit 2 if not: an installation problem);
2. it imports and is an ``AirflowPlugin`` whose listener implements the three dag-run hooks (exit 1);
3. Airflow's own listener manager registers that listener (exit 1);
4. the hook, called through Airflow's hook machinery with a stand-in DagRun, records the run (exit 1 if etcd could
   not be written within ``--timeout``). ``--dry-run`` prints the key and value instead of writing them.

Rules: the stand-in run belongs to a DAG no pipeline uses (``coordinator_check_plugin``); its key is deleted again
after the check unless ``--keep``. Other plugins' listeners are never called with the stand-in.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any

import typer

from coordinator.airflow_plugin.records import INSTANCE_ENV, WriterConfig, make_config
from coordinator.cli.app import EXIT_FAILURE, EXIT_INVALID, EtcdOpt, PrefixOpt, app, build_settings, fail, out
from coordinator.core.model import DEFAULT_INSTANCE, canonical_partition, partition_datetime
from coordinator.errors import ConfigError, CoordinatorError

ENTRY_POINT_GROUP = "airflow.plugins"
ENTRY_POINT_NAME = "etcd_coordinator"
HOOKS = ("on_dag_run_running", "on_dag_run_success", "on_dag_run_failed")
CHECK_DAG_ID = "coordinator_check_plugin"
# A partition no real pipeline is likely to use, so the check never looks like real data to a watcher.
CHECK_PARTITION = "2000-01-01T00:00:00Z"


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


def _ok(message: str) -> None:
    out.print(f"[green]ok[/]    {message}", markup=True, highlight=False)


def _find_entry_point() -> EntryPoint:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ENTRY_POINT_NAME]
    if not found:
        fail(
            f"no '{ENTRY_POINT_NAME}' entry point in group '{ENTRY_POINT_GROUP}': the coordinator package is not "
            "installed in this Python environment (install it where Airflow runs: pip install "
            "airflow-etcd-coordinator)",
            EXIT_INVALID,
        )
    return found[0]


def _load_listener(ep: EntryPoint) -> Any:
    """Import the plugin class like Airflow does and return its listener; fail with the step that broke."""
    try:
        plugin_cls = ep.load()
    except Exception as exc:
        fail(f"importing {ep.value} failed (Airflow would only log this): {type(exc).__name__}: {exc}", EXIT_FAILURE)
    try:
        from airflow.plugins_manager import AirflowPlugin
    except ImportError as exc:
        fail(f"Airflow is not importable in this environment: {exc}", EXIT_INVALID)
    if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, AirflowPlugin)):
        fail(f"{ep.value} is not an AirflowPlugin subclass", EXIT_FAILURE)
    listeners = list(getattr(plugin_cls, "listeners", []) or [])
    for listener in listeners:
        # pluggy's HookimplMarker("airflow") marks implementations with an ``airflow_impl`` attribute.
        if all(getattr(getattr(listener, hook, None), "airflow_impl", None) is not None for hook in HOOKS):
            return listener
    fail(f"{ep.value} has no listener implementing {', '.join(HOOKS)} (listeners: {listeners!r})", EXIT_FAILURE)


def _registered_hook(listener: Any) -> Any:
    """Airflow's own listener manager must have registered the listener; return a hook caller for ours only."""
    try:
        from airflow.listeners.listener import get_listener_manager

        manager = get_listener_manager()
        plugins = manager.pm.get_plugins()
    except Exception as exc:
        fail(f"Airflow's listener manager could not load plugins: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    if listener not in plugins:
        fail(
            "Airflow did not register the coordinator listener; check `airflow plugins` and the plugin import "
            "errors in the scheduler log",
            EXIT_FAILURE,
        )
    # Only our listener: other plugins' listeners (lineage, alerting) must not see the stand-in run.
    return manager.pm.subset_hook_caller("on_dag_run_success", remove_plugins=[p for p in plugins if p is not listener])


@app.command("check-plugin")
def check_plugin(
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
    settings = build_settings(etcd_endpoints=etcd, prefix=prefix)
    try:
        config = make_config(settings, instance or os.environ.get(INSTANCE_ENV, "").strip() or DEFAULT_INSTANCE)
    except ConfigError as exc:
        fail(str(exc), EXIT_INVALID)

    ep = _find_entry_point()
    dist = f" ({ep.dist.name} {ep.dist.version})" if ep.dist is not None else ""
    _ok(f"entry point {ENTRY_POINT_GROUP}:{ep.name} -> {ep.value}{dist}")
    listener = _load_listener(ep)
    _ok(f"AirflowPlugin with listener {type(listener).__name__} ({', '.join(HOOKS)})")
    hook = _registered_hook(listener)
    _ok("registered by Airflow's listener manager")

    now = datetime.now(UTC).replace(microsecond=0)
    run = FakeDagRun(
        dag_id=CHECK_DAG_ID,
        # A new run id each time: the write is then always a real one, never skipped as an identical rewrite.
        run_id=f"check_plugin__{now.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:6]}",
        logical_date=partition_datetime(canonical_partition(CHECK_PARTITION)),
        start_date=now,
        end_date=now,
    )
    if dry_run:
        _dry_run(config, hook, run)
    else:
        _write(config, hook, run, timeout, keep)


def _dry_run(config: WriterConfig, hook: Any, run: FakeDagRun) -> None:
    from coordinator.airflow_plugin.writer import RecordingWriter, install_writer

    recorder = RecordingWriter(config)
    previous = install_writer(recorder)
    try:
        hook(dag_run=run, msg="coordinator check-plugin --dry-run")
    finally:
        install_writer(previous)
    if len(recorder.facts) != 1:
        fail(f"the hook recorded {len(recorder.facts)} records instead of 1", EXIT_FAILURE)
    fact = recorder.facts[0]
    out.print(f"plugin OK (dry run): would write {fact.key}", highlight=False)
    out.print(fact.record.model_dump_json(exclude_none=True), highlight=False)


def _write(config: WriterConfig, hook: Any, run: FakeDagRun, timeout: float, keep: bool) -> None:
    from coordinator.airflow_plugin.writer import BackgroundWriter, install_writer

    writer = BackgroundWriter(config)
    previous = install_writer(writer)
    try:
        started = time.perf_counter()
        hook(dag_run=run, msg="coordinator check-plugin")
        hook_ms = (time.perf_counter() - started) * 1000
        flushed = writer.flush(timeout)
    finally:
        writer.close(1.0)
        install_writer(previous)
    endpoints = settings_text(config)
    if writer.stats.submitted != 1:
        fail(f"the hook did not hand the run to the writer (stats: {writer.stats})", EXIT_FAILURE)
    if not flushed or writer.last_written is None:
        fail(
            f"the hook ran ({hook_ms:.1f} ms) but the record did not reach etcd at {endpoints} within {timeout:g} s: "
            f"{writer.last_error or 'no error reported'}",
            EXIT_FAILURE,
        )
    key, revision = writer.last_written
    _ok(f"hook returned in {hook_ms:.2f} ms; the background writer wrote revision {revision}")
    if not keep:
        try:
            asyncio.run(_delete(config, key))
        except CoordinatorError as exc:
            out.print(f"[yellow]note[/]  could not delete the check's key again: {exc}", markup=True)
    suffix = "" if keep else " (deleted again; --keep leaves it)"
    out.print(f"plugin OK: wrote {key}{suffix}", highlight=False)


def settings_text(config: WriterConfig) -> str:
    return ",".join(f"{'https' if e.tls else 'http'}://{e.host}:{e.port}" for e in config.etcd.endpoints)


async def _delete(config: WriterConfig, key: str) -> None:
    from coordinator.airflow_plugin.records import connect_store

    store = await connect_store(config.etcd)
    try:
        await store.delete(key)
    finally:
        await store.close()
