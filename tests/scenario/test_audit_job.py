"""The leader's audit as a timed key of the work queue, through real watcher processes, a real etcd and the fake
Airflow: it repairs a run state the plugin lost, on the leader only, round after round."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from coordinator.core.model import canonical_partition
from tests.scenario.conftest import LAST, ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario


def test_the_leaders_audit_job_repairs_a_lost_state_and_a_standby_never_audits(stack: Stack) -> None:
    """The plugin's write of the last DAG's success is lost; the leader's audit (every second, a timed key of its
    queue) writes it with source audit:default and logs audit.repaired; the standby logs no audit round at all,
    and the leader keeps auditing round after round."""
    partition = new_partition()
    plugin = stack.fake.on_state

    def lossy(dag_id: str, run_id: str, logical_date: datetime | None, state: str, clear_number: int) -> None:
        """The plugin, except that the last DAG's success never reaches etcd (etcd was away at that moment)."""
        lost = dag_id == LAST and state == "success" and logical_date is not None
        if lost and canonical_partition(logical_date) == partition:  # type: ignore[arg-type]
            return
        assert plugin is not None
        plugin(dag_id, run_id, logical_date, state, clear_number)

    stack.fake.on_state = lossy
    leader = stack.start_watcher("w1", COORDINATOR_AUDIT_INTERVAL_S="1")
    standby = stack.start_watcher("w2", ready="loaded", COORDINATOR_AUDIT_INTERVAL_S="1")
    stack.trigger_root(partition, ROOT_DAG)
    wait_for(lambda: any(r.state == "success" for r in stack.fake_runs(LAST, partition)), f"{LAST} to succeed")

    record = wait_for(
        lambda: (r := stack.run_record(LAST, partition)) is not None and r.get("state") == "success" and r,
        f"the audit to write {LAST}'s success",
    )
    assert record["source"] == "audit:default", json.dumps(record)
    leader.wait_log(r"audit\.repaired key=\S+/runs/default/" + re.escape(LAST))
    rounds = len(leader.lines(r"audit checked="))
    wait_for(lambda: len(leader.lines(r"audit checked=")) >= rounds + 2, "two more audit rounds on the leader")
    assert standby.lines(r"audit checked=") == [] and standby.lines(r"audit\.") == []
