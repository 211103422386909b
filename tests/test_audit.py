"""The audit's repair decisions: write only what etcd is missing, never a needless new generation; and the audit pass
against a real etcd and a fake Airflow: it decides from the leader's view and writes through the one run-record
writer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient
from coordinator.core.audit import audit_record
from coordinator.core.model import KeyLayout, NodeId, RunRecord, RunState, dump_record, parse_run_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.task_facts import TaskRecord, parse_task_record
from coordinator.core.view import View
from coordinator.etcd import KV, EtcdStore
from coordinator.runtime.settings import EtcdSettings, InstanceSettings
from coordinator.watcher.audit import AuditResult, audit_once
from tests.support.fake_airflow import FakeAirflow

NOW = datetime(2026, 1, 2, tzinfo=UTC)
T0 = datetime(2026, 1, 1, 1, tzinfo=UTC)


def rec(state: str, cn: int = 0, run_id: str = "r1", start: datetime | None = T0, source: str = "airflow-plugin:x"):
    return RunRecord(state=RunState(state), run_id=run_id, clear_number=cn, start_date=start, source=source)


@pytest.mark.parametrize(
    ("existing", "airflow_state", "start", "expected"),
    [
        pytest.param(None, "success", T0, ("success", 0), id="missing-run-is-written"),
        pytest.param(None, "queued", None, None, id="queued-is-never-written"),
        pytest.param(None, "up_for_retry", T0, None, id="unknown-state-ignored"),
        pytest.param(rec("running"), "success", T0, ("success", 0), id="lagging-running-completed"),
        pytest.param(rec("success"), "success", T0, None, id="same-success-not-rewritten"),
        pytest.param(rec("failed"), "failed", T0, None, id="same-failure-not-rewritten"),
        pytest.param(rec("success", 2), "success", T0 + timedelta(minutes=5), ("success", 3), id="missed-attempt"),
        pytest.param(rec("success", 1), "running", T0 + timedelta(minutes=5), ("running", 2), id="missed-clear"),
        pytest.param(rec("success", 0, run_id="old"), "success", T0, ("success", 0), id="recreated-run"),
        pytest.param(rec("success", 0, "ext", source="mark"), "success", T0, None, id="foreign-record-kept"),
        pytest.param(rec("success"), "running", T0 + timedelta(milliseconds=300), None, id="same-attempt-no-backwards"),
        pytest.param(rec("failed", 1, source="retract:carol"), "success", T0, None, id="retraction-stands"),
        pytest.param(rec("failed", 1, source="retract:carol"), "success", None, None, id="retraction-stands-no-start"),
        pytest.param(
            rec("failed", 1, source="retract:carol"),
            "running",
            T0 + timedelta(minutes=5),
            ("running", 2),
            id="rerun-after-retraction",
        ),
    ],
)
def test_audit_record(existing, airflow_state, start, expected) -> None:
    """Each (etcd record, Airflow run) pair yields exactly the repair the audit rules ask for."""
    result = audit_record(
        existing, run_id="r1", state=airflow_state, start_date=start, end_date=None, source="audit:x", now=NOW
    )
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert (str(result.state), result.clear_number) == expected
        assert result.source == "audit:x"


# -- the audit pass: real etcd, fake Airflow ------------------------------------------------------------------------

LD = datetime(2026, 1, 1, tzinfo=UTC)
PARTITION = "2026-01-01T00:00:00Z"
RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"


class CountingStore:
    """The store, counting the calls the run-record writer makes (get and cas are all it uses)."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store
        self.gets = 0
        self.cases = 0

    async def get(self, key: str) -> KV | None:
        self.gets += 1
        return await self.store.get(key)

    async def cas(self, key: str, value: bytes, expected: int) -> Any:
        self.cases += 1
        return await self.store.cas(key, value, expected)


@pytest.fixture
def airflow() -> Iterator[FakeAirflow]:
    """A fake Airflow with DAGs a and b, where a's run for PARTITION has succeeded."""
    with FakeAirflow(["a", "b"], password="pw", run_duration_s=0.02) as fake:
        fake.create_run("a", RUN_ID, LD)
        fake.wait_idle()
        yield fake


async def audit(store: Any, keys: KeyLayout, fake: FakeAirflow, view: View) -> AuditResult:
    settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
    async with AirflowClient(settings, timeout_s=5.0) as client:
        graph = parse_spec('{"b": "a"}')
        return await audit_once(store, keys, graph, {"default": client}, timedelta(days=3650), view)


async def loaded_view(store: EtcdStore, keys: KeyLayout) -> View:
    view = View(keys)
    snap = await store.snapshot(keys.root)
    view.load(snap.revision, ((kv.key, kv.value, kv.mod_revision) for kv in snap.kvs))
    return view


def test_audit_repairs_what_the_view_lacks_and_reads_nothing_for_what_it_knows(
    etcd_settings: EtcdSettings, etcd_prefix: str, airflow: FakeAirflow, arun: Callable[..., Any]
) -> None:
    """A run missing from the view is written (one read, one CAS); once the view has it, a pass makes no etcd call."""
    keys = KeyLayout(etcd_prefix)
    key = keys.run_key(NodeId("default", "a"), PARTITION)

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            counting = CountingStore(store)
            first = await audit(counting, keys, airflow, await loaded_view(store, keys))
            assert (first.checked, first.repaired, first.errors) == (1, 1, 0)
            assert (counting.gets, counting.cases) == (1, 1)
            kv = await store.get(key)
            assert kv is not None
            record, _ = parse_run_record(kv.value)
            assert record is not None and (record.state, record.source) == (RunState.SUCCESS, "audit:default")

            again = CountingStore(store)
            second = await audit(again, keys, airflow, await loaded_view(store, keys))
            assert (second.checked, second.repaired, second.errors) == (1, 0, 0)
            assert (again.gets, again.cases) == (0, 0)
            assert (await store.get(key)) == kv

    arun(go())


@pytest.mark.parametrize(
    ("run_id", "source"),
    [
        pytest.param(RUN_ID, "airflow-plugin:default", id="plugin-wrote-the-same-attempt"),
        pytest.param("manual__by-hand", "mark", id="a-human-marked-another-run"),
    ],
)
def test_audit_with_a_view_behind_etcd_never_overwrites_the_newer_record(
    etcd_settings: EtcdSettings,
    etcd_prefix: str,
    airflow: FakeAirflow,
    arun: Callable[..., Any],
    run_id: str,
    source: str,
) -> None:
    """The view lacks a record written since: the audit re-decides against what etcd holds and writes nothing."""
    keys = KeyLayout(etcd_prefix)
    key = keys.run_key(NodeId("default", "a"), PARTITION)
    run = airflow.run("a", RUN_ID)
    assert run is not None and run.state == "success"

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            stale_view = await loaded_view(store, keys)  # taken before the plugin's write
            plugin = RunRecord(
                state=RunState.SUCCESS, run_id=run_id, clear_number=0, source=source,
                start_date=run.start_date, end_date=run.end_date,
            )  # fmt: skip
            revision = await store.put(key, dump_record(plugin))
            result = await audit(store, keys, airflow, stale_view)
            kv = await store.get(key)
        assert (result.repaired, result.stale, result.errors) == (0, 1, 0)
        assert kv is not None and kv.mod_revision == revision  # no new generation of a

    arun(go())


# -- task states (semantics "task-level upstreams"): real etcd, fake Airflow's task-instance endpoint ----------------

TASK_KEY_OF_A = "tasks/default/a/publish/" + PARTITION


async def adopt_named_tasks(store: EtcdStore, keys: KeyLayout, upstream_tasks: dict[str, list[str]]) -> None:
    """Put a graph value naming ``upstream_tasks`` (what the leading watcher adopts) into etcd."""
    value = {"digest": "d", "adopted_by": "test", "nodes": {}, "upstream_tasks": upstream_tasks}
    await store.put(keys.config_key("graph"), json.dumps(value).encode())


def read_task_record(kv: KV | None) -> TaskRecord:
    assert kv is not None
    record, problem = parse_task_record(kv.value)
    assert record is not None, problem
    return record


def test_audit_repairs_a_missed_task_state_once(
    etcd_settings: EtcdSettings, etcd_prefix: str, airflow: FakeAirflow, arun: Callable[..., Any]
) -> None:
    """A named task's success missing from etcd is written with REST's try and source audit; the next pass writes
    nothing (no second generation)."""
    keys = KeyLayout(etcd_prefix)
    key = f"{etcd_prefix}/{TASK_KEY_OF_A}"
    airflow.set_task_instance("a", RUN_ID, "publish", "success", try_number=2, start_date=T0, end_date=T0)

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await adopt_named_tasks(store, keys, {"default/a": ["publish"]})
            first = await audit(store, keys, airflow, await loaded_view(store, keys))
            assert (first.tasks_checked, first.tasks_repaired, first.errors) == (1, 1, 0)
            kv = await store.get(key)
            record = read_task_record(kv)
            assert (record.state, record.run_id, record.try_number, record.clear_number, record.source) == (
                RunState.SUCCESS, RUN_ID, 2, 0, "audit:default",
            )  # fmt: skip
            second = await audit(store, keys, airflow, await loaded_view(store, keys))
            assert (second.tasks_checked, second.tasks_repaired) == (1, 0)
            assert await store.get(key) == kv

    arun(go())


def test_a_task_airflow_never_runs_is_recorded_at_info_and_a_lost_write_still_warns(
    etcd_settings: EtcdSettings,
    etcd_prefix: str,
    airflow: FakeAirflow,
    arun: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An EmptyOperator's success (Airflow marks it without a task process) is written with an info line
    ``audit.task_recorded ... reason=not_run_by_airflow``; a PythonOperator's missing success is a warning
    ``audit.task_repaired``."""
    keys = KeyLayout(etcd_prefix)
    airflow.set_task_instance("a", RUN_ID, "publish", "success", start_date=T0, end_date=T0, operator="EmptyOperator")
    airflow.set_task_instance("a", RUN_ID, "load", "success", start_date=T0, end_date=T0)

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await adopt_named_tasks(store, keys, {"default/a": ["publish", "load"]})
            with caplog.at_level(logging.INFO, logger="coordinator.watcher.audit"):
                result = await audit(store, keys, airflow, await loaded_view(store, keys))
            assert (result.tasks_checked, result.tasks_repaired) == (2, 2)
            for task in ("publish", "load"):
                assert read_task_record(await store.get(f"{etcd_prefix}/tasks/default/a/{task}/{PARTITION}")).state is (
                    RunState.SUCCESS
                )

    arun(go())
    lines = {(r.levelno, r.getMessage().split(" ", 1)[0], "/publish/" in r.getMessage()) for r in caplog.records}
    assert (logging.INFO, "audit.task_recorded", True) in lines
    assert (logging.WARNING, "audit.task_repaired", False) in lines
    assert (logging.WARNING, "audit.task_repaired", True) not in lines


@pytest.mark.parametrize(
    ("etcd_try", "airflow_state", "airflow_try", "written"),
    [
        pytest.param(1, "success", 1, False, id="plugin-wrote-the-same-try"),
        pytest.param(1, "success", 2, True, id="missed-a-cleared-try"),
        pytest.param(2, "running", 1, False, id="rest-behind-etcd"),
        pytest.param(1, "up_for_retry", 2, False, id="retry-is-not-a-fact"),
        pytest.param(1, None, 2, False, id="cleared-not-yet-scheduled"),
    ],
)
def test_audit_task_repair_follows_the_try_ordering(
    etcd_settings: EtcdSettings,
    etcd_prefix: str,
    airflow: FakeAirflow,
    arun: Callable[..., Any],
    etcd_try: int,
    airflow_state: str | None,
    airflow_try: int,
    written: bool,
) -> None:
    """With the plugin's record in etcd, the audit writes only a newer try; never an older or a non-final one."""
    keys = KeyLayout(etcd_prefix)
    key = f"{etcd_prefix}/{TASK_KEY_OF_A}"
    airflow.set_task_instance("a", RUN_ID, "publish", airflow_state, try_number=airflow_try, start_date=T0)
    plugin = TaskRecord(
        state=RunState.SUCCESS, run_id=RUN_ID, clear_number=1, try_number=etcd_try, source="airflow-plugin:default"
    )

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await adopt_named_tasks(store, keys, {"default/a": ["publish"]})
            revision = await store.put(key, dump_record(plugin))
            result = await audit(store, keys, airflow, await loaded_view(store, keys))
            kv = await store.get(key)
        assert result.tasks_repaired == int(written)
        assert kv is not None and (kv.mod_revision != revision) is written
        if written:
            record = read_task_record(kv)
            assert (record.try_number, record.clear_number, record.source) == (airflow_try, 1, "audit:default")

    arun(go())


def test_audit_asks_airflow_only_about_named_tasks(
    etcd_settings: EtcdSettings, etcd_prefix: str, airflow: FakeAirflow, arun: Callable[..., Any]
) -> None:
    """Without named tasks (or for a DAG with none) the audit makes no task-instance request and writes no task key."""
    keys = KeyLayout(etcd_prefix)
    airflow.set_task_instance("a", RUN_ID, "publish", "success")

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await adopt_named_tasks(store, keys, {"default/b": ["publish"]})
            result = await audit(store, keys, airflow, await loaded_view(store, keys))
            snap = await store.snapshot(keys.tasks)
        assert result.tasks_checked == 0 and snap.kvs == ()

    arun(go())
    assert airflow.calls("list_task_instances", "a") == 0


def test_audit_lists_each_named_task_once_per_pass(
    etcd_settings: EtcdSettings, etcd_prefix: str, airflow: FakeAirflow, arun: Callable[..., Any]
) -> None:
    """One task-instance list per named task and pass, whatever the number of runs; a named task Airflow has no
    instance of yet (added later) and a mapped instance are skipped without an error."""
    keys = KeyLayout(etcd_prefix)
    airflow.create_run("a", "second", datetime(2026, 1, 2, tzinfo=UTC))
    airflow.wait_idle()
    airflow.set_task_instance("a", RUN_ID, "publish", "success")
    airflow.set_task_instance("a", "second", "publish", "success")
    airflow.set_task_instance("a", "second", "mapped", "success", map_index=0)

    async def go() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await adopt_named_tasks(store, keys, {"default/a": ["publish", "added_later", "mapped"]})
            result = await audit(store, keys, airflow, await loaded_view(store, keys))
            snap = await store.snapshot(keys.tasks)
        assert (result.tasks_checked, result.tasks_repaired, result.errors) == (2, 2, 0)
        assert sorted(kv.key.rsplit("/", 1)[-1] for kv in snap.kvs) == [PARTITION, "2026-01-02T00:00:00Z"]

    arun(go())
    assert airflow.calls("list_task_instances", "a") == 3


def test_audit_leaves_an_openlineage_node_to_the_receiver(
    etcd_settings: EtcdSettings, etcd_prefix: str, airflow: FakeAirflow, arun: Callable[..., Any]
) -> None:
    """A DAG an "openlineage" entry maps (its facts come from Airflow's OpenLineage provider through the receiver) is
    not audited: a second writer with Airflow's run ids would make each success two generations."""
    keys = KeyLayout(etcd_prefix)
    graph = parse_spec(json.dumps({
        "version": 1, "instances": {"default": {}},
        "dags": {"default/a": {}, "default/b": {"upstreams": ["default/a"]}},
        "openlineage": [{"namespace": "airflow_prod", "job": "a", "instance": "default", "partition": "nominal"}],
    }))  # fmt: skip

    async def go() -> None:
        settings = InstanceSettings(url=airflow.url, username="admin", password=SecretStr("pw"))
        async with await EtcdStore.connect(etcd_settings) as store, AirflowClient(settings, timeout_s=5.0) as client:
            view = await loaded_view(store, keys)
            result = await audit_once(store, keys, graph, {"default": client}, timedelta(days=3650), view)
            assert (result.checked, result.repaired) == (0, 0)
            assert await store.get(keys.run_key(NodeId("default", "a"), PARTITION)) is None

    arun(go())
