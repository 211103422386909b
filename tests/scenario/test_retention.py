"""Retention with a real watcher running (semantics rule 11): pruning old partitions triggers and clears nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.model import canonical_partition
from tests.scenario.conftest import DOWNSTREAM, LAST, PIPELINE, ROOT_DAG, Stack, wait_for

pytestmark = pytest.mark.scenario

# Past dates (prune refuses a cutoff in the future); this test's prefix and fake Airflow are its own.
OLD = ("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")
CUTOFF = "2020-02-01T00:00:00Z"
NEW = "2020-03-01T00:00:00Z"


def airflow_actions(stack: Stack) -> dict[str, int]:
    """Every create (trigger) and clear request the fake Airflow received, per DAG."""
    return {f"{kind} {dag}": stack.fake.calls(kind, dag) for kind in ("trigger", "clear") for dag in PIPELINE}


def prune(stack: Stack, *args: str) -> str:
    """``coordinator prune ARGS`` against the stack (prune reads no dependencies.json); its stdout."""
    result = stack.command("prune", *args, "--etcd", stack.endpoint, "--prefix", stack.prefix)
    assert result.returncode == 0, result.stderr
    return result.stdout


def cascade(stack: Stack, partition: str, attempt: int = 0) -> None:
    stack.trigger_root(partition)
    stack.wait_success(LAST, partition, attempt)
    stack.wait_confirmed(partition)
    stack.settle()


def test_prune_under_a_running_watcher_triggers_nothing_and_new_partitions_still_cascade(stack: Stack) -> None:
    """While a watcher runs, prune deletes two finished cascades; no trigger or clear reaches Airflow, not even when
    an old date is rerun in Airflow afterwards; status, why and backfill say it is retired; a new date cascades."""
    watcher = stack.start_watcher()
    for p in OLD:
        cascade(stack, p)
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{OLD[1]}")  # a rerun: the ledgers hold a second generation
    stack.wait_success(LAST, OLD[1], attempt=1)
    stack.wait_confirmed(OLD[1])
    stack.settle()
    before = airflow_actions(stack)

    result = prune(stack, "--before", CUTOFF)
    assert "delete 26 key(s) of 2 partition(s)" in result, result
    assert "deleted 26 key(s) in 1 transaction(s)" in result and "kept 0 partitions" in result
    stack.settle()
    assert stack.etcd.items(stack.prefix + "/runs/") == {}
    assert stack.etcd.items(stack.prefix + "/triggers/") == {}
    assert airflow_actions(stack) == before, "the prune made the watcher call Airflow"
    watcher.wait_log(r"retention\.floor before=2020-02-01T00:00:00Z")

    # A late rerun of a retired date in Airflow: its new generation is written to etcd, and nothing follows it.
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{OLD[0]}")
    stack.wait_success(ROOT_DAG, OLD[0], attempt=1)
    stack.settle()
    assert airflow_actions(stack) == before, "a write in a retired partition made the watcher call Airflow"
    assert set(stack.etcd.items(stack.prefix + "/runs/")) == {stack.run_key(ROOT_DAG, OLD[0])}
    watcher.wait_log(r"retention\.forgot partitions=2 keys=26 floor=2020-02-01T00:00:00Z")  # memory (rule 11f)
    standby = stack.start_watcher("w2", ready="loaded")
    assert re.search(r"view\.loaded revision=\d+ keys=\d+ partitions=0$", standby.wait_log(r"view\.loaded"))

    status = stack.status_json(OLD[0])
    assert status["retention"]["before"] == CUTOFF
    retired = [row for row in status["rows"] if row["dag"] == "02_pipeline"]
    assert retired and "retired" in retired[0]["summary"] and not retired[0]["due"], status["rows"]
    why = stack.cli("why", "02_pipeline", "-p", OLD[0]).stdout
    assert "02_pipeline is retired for 2020-01-01T00:00:00Z: partitions before 2020-02-01T00:00:00Z are retired" in why
    refused = stack.cli("backfill", "02_pipeline", "--from", OLD[0], "--to", NEW, check=False)
    assert refused.returncode == 2 and "retired by retention" in refused.stderr, refused.stderr
    assert "--lower-floor" in " ".join(refused.stderr.split())

    cascade(stack, NEW)
    stack.assert_once(NEW)
    assert all(stack.fake.calls("trigger", dag) == before[f"trigger {dag}"] + 1 for dag in DOWNSTREAM)
    assert watcher.alive and not watcher.lines(r"level=ERROR")


def test_periodic_retention_on_the_leader_prunes_old_partitions_and_triggers_nothing(stack: Stack) -> None:
    """COORDINATOR_RETENTION on the leader records the floor and deletes each old cascade as its partition's key comes
    due, one retention.pruned line per partition; Airflow receives nothing from it, a late rerun of a retired date is
    deleted in turn once it has ended, and a recent partition still cascades and stays."""
    recent = canonical_partition(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(1))
    watcher = stack.start_watcher()
    for p in OLD:
        cascade(stack, p)
    before = airflow_actions(stack)
    watcher.stop()

    leader = stack.start_watcher("w2", COORDINATOR_RETENTION="30d", COORDINATOR_RETENTION_INTERVAL_S="1")
    for p in OLD:
        line = leader.wait_log(rf"retention\.pruned partition={p} .* deleted=[1-9]")
        assert re.search(r"deleted=13 partitions=1 runs=7 ledger=6 backfill=0 kept_partitions=0", line), line
    wait_for(lambda: not stack.etcd.items(stack.prefix + "/runs/"), "the old run states deleted")
    floor = json.loads(stack.etcd.get(stack.prefix + "/config/retention") or b"{}")
    assert floor["by"] == "w2" and floor["before"] > OLD[1]
    stack.settle()
    assert airflow_actions(stack) == before

    cascade(stack, recent)
    stack.assert_once(recent)
    settled = airflow_actions(stack)
    # A late rerun of a retired date: the watch brings its partition's key, and the run state it writes is deleted
    # (kept while the run runs, looked at again a second later), with nothing triggered; the recent date stays.
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{OLD[0]}")
    leader.wait_log(rf"retention\.pruned partition={OLD[0]} .* deleted=1 partitions=1 runs=1 ledger=0 ")
    assert stack.etcd.get(stack.run_key(ROOT_DAG, OLD[0])) is None
    stack.settle()
    assert airflow_actions(stack) == settled
    assert stack.run_record(LAST, recent) is not None
    assert not leader.lines(rf"retention\.pruned partition={recent} ")
