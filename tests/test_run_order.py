"""The run order of several runs of one partition (semantics `newest-run-stands`), as example tables: the rule itself,
the writers' ``should_replace``, the audit's decision, and the plugin's record of an Airflow 3 run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from coordinator.airflow_plugin.records import WriterConfig, run_writes_from_dag_run
from coordinator.core.actions import Trigger
from coordinator.core.audit import audit_record
from coordinator.core.model import (
    KeyLayout,
    RunRecord,
    RunState,
    TriggerAction,
    dump_record,
    run_id_for,
    should_replace,
)
from coordinator.core.run_order import comes_later, standing_run
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from tests.support.world import P1, World, make_graph, n

T1 = datetime(2026, 11, 27, 8, 18, 9, tzinfo=UTC)
T2 = datetime(2026, 11, 27, 8, 20, 35, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 9, tzinfo=UTC)


def rec(
    run_id: str, run_after: datetime | None, state: str = "success", cn: int = 0, source: str = "audit:a"
) -> RunRecord:
    return RunRecord(state=RunState(state), run_id=run_id, clear_number=cn, run_after=run_after, source=source,
                     start_date=run_after)  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "replaces"),
    [
        pytest.param(rec("old", T1), rec("new", T2), True, id="newer-run-replaces"),
        pytest.param(rec("new", T2), rec("old", T1), False, id="older-run-never-replaces"),
        pytest.param(rec("new", T2), rec("old", T1, cn=3), False, id="older-run-cleared-again-never-replaces"),
        pytest.param(rec("b", T1), rec("a", T1), False, id="same-run-after-run-id-breaks-the-tie"),
        pytest.param(rec("a", T1), rec("b", T1), True, id="same-run-after-later-run-id-replaces"),
        pytest.param(rec("new", None), rec("old", T1), True, id="value-without-run-after-replaced-as-before"),
        pytest.param(rec("new", T2), rec("mark__x", None, source="mark"), True, id="writer-without-run-after-replaces"),
        pytest.param(rec("r", T1, cn=1), rec("r", T1, cn=0), False, id="same-run-older-attempt-never"),
        pytest.param(rec("r", T1), rec("r", T1), False, id="same-attempt-same-state-never-rewritten"),
    ],
)
def test_should_replace_follows_the_run_order(old: RunRecord, new: RunRecord, replaces: bool) -> None:
    """Of two runs of one partition the later by (run_after, run_id) stands; unordered values replace by run id."""
    assert should_replace(old, new) is replaces


@dataclass(frozen=True)
class Listed:
    run_id: str
    run_after: datetime | None


@pytest.mark.parametrize(
    ("runs", "stands"),
    [
        pytest.param([Listed("b", T2), Listed("a", T1)], "b", id="newest-first-listing"),
        pytest.param([Listed("a", T1), Listed("b", T2)], "b", id="oldest-first-listing"),
        pytest.param([Listed("late", T1), Listed("early", T2)], "early", id="run-after-not-the-listing-order"),
        pytest.param([Listed("x", None), Listed("y", None)], "x", id="airflow2-first-listed-stands"),
        pytest.param([], None, id="no-runs"),
    ],
)
def test_standing_run_is_the_last_in_the_run_order(runs: list[Listed], stands: str | None) -> None:
    """The run that stands among the runs Airflow lists for one partition."""
    got = standing_run(runs)
    assert (got.run_id if got is not None else None) == stands


def test_comes_later_is_a_total_order_on_ordered_runs() -> None:
    """Of two distinct ordered runs exactly one comes later: an order a writer can never loop on."""
    runs = [Listed(r, T1 + timedelta(seconds=s)) for r in ("a", "b") for s in (0, 1)]
    for x in runs:
        for y in runs:
            if x != y:
                assert comes_later(x, y) != comes_later(y, x), (x, y)


@pytest.mark.parametrize(
    ("existing", "run_id", "run_after", "writes"),
    [
        pytest.param(rec("new", T2), "old", T1, False, id="older-listed-run-not-written"),
        pytest.param(rec("old", T1), "new", T2, True, id="newer-listed-run-written"),
        pytest.param(rec("new", None), "old", T1, True, id="value-before-run-after-replaced-as-before"),
        pytest.param(rec("ext", None, source="my-job"), "new", T2, False, id="another-writers-record-kept"),
    ],
)
def test_the_audit_writes_another_run_only_when_it_comes_later(
    existing: RunRecord, run_id: str, run_after: datetime, writes: bool
) -> None:
    """The audit never proposes an older run over a newer run's record (semantics `newest-run-stands`)."""
    got = audit_record(existing, run_id=run_id, state="success", start_date=run_after, end_date=run_after,
                       source="audit:a", now=NOW, run_after=run_after)  # fmt: skip
    assert (got is not None) is writes
    if got is not None:
        assert got.run_after == run_after


def test_the_plugin_records_an_airflow3_runs_run_after() -> None:
    """A record the plugin makes of an Airflow 3 run carries the run's run_after; of an Airflow 2 run, none."""
    etcd = EtcdSettings(endpoints=parse_endpoints("http://127.0.0.1:2379"))
    config = WriterConfig(etcd=etcd, instance="a", keys=KeyLayout("/coordinator"))
    common = dict(dag_id="consumer", logical_date=None, partition_date=None, partition_key="eu", clear_number=1,
                  start_date=T2, end_date=T2, run_type="manual")  # fmt: skip
    writes, why = run_writes_from_dag_run(SimpleNamespace(run_id="r3", run_after=T2, **common), RunState.SUCCESS,
                                          config, NOW)  # fmt: skip
    assert why is None and [w.record.run_after for w in writes] == [T2]
    writes, why = run_writes_from_dag_run(SimpleNamespace(run_id="r2", **common), RunState.SUCCESS, config, NOW)
    assert why is None and [w.record.run_after for w in writes] == [None]


def test_a_rerun_clears_the_newer_airflow_run_that_stands_over_the_coordinators_own() -> None:
    """A dependent the coordinator created, then triggered again in Airflow for the same partition (a newer run that
    stands): an upstream's rerun clears that newer run (its next attempt is recorded), not the older own one."""
    world = World(make_graph({"d": ["u"]}))
    world.adopt()
    world.state("u", P1, RunState.SUCCESS, "scheduled__u")
    world.settle()
    assert world.view.runs[(n("d"), P1)].run_id == run_id_for(P1)
    newer = RunRecord(state=RunState.SUCCESS, run_id="manual__again", source="airflow-plugin:default",
                      run_after=T2)  # fmt: skip
    world.write(world.keys.run_key(n("d"), P1), dump_record(newer))
    world.state("u", P1, RunState.SUCCESS, "scheduled__u", clear_number=1)
    (action,) = world.plan().actions
    assert isinstance(action, Trigger) and action.action is TriggerAction.CLEAR and action.run_id == "manual__again"
