"""A plugin that stops writing is named: a real watcher (its audit every second), a real etcd and the fake Airflow.
The plugin records a first cascade; then it writes nothing (a scheduler pointed at a wrong etcd) while the runs go
on, the leader's audit writes their states, and `doctor` fails naming the instance, with the audit's repairs counted
per instance; once the plugin writes again, the check clears."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from coordinator.core.model import canonical_partition
from tests.scenario.conftest import LAST, ROOT_DAG, Stack, new_partition, wait_for
from tests.scenario.test_metrics_health import scrape, total

pytestmark = pytest.mark.scenario


def plugin_records(stack: Stack) -> dict[str, Any]:
    """``coordinator doctor --format json``'s 'plugin records' check (doctor exits 1 while a check fails)."""
    result = stack.cli("doctor", "--format", "json", airflow=True, check=False)
    return next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "plugin records")


def test_a_plugin_that_stops_writing_is_named_by_doctor_and_clears_when_it_writes_again(stack: Stack) -> None:
    """While the plugin writes: 'plugin records' is not failing. Silenced: the audit carries the cascade, the check
    fails naming 'default' and the run states the audit wrote, and coordinator_audit_repairs{instance="default"}
    rises. Writing again: the check is ok."""
    silent = False

    def plugin(dag_id: str, run_id: str, logical_date: datetime | None, state: str, clear_number: int) -> None:
        """What the plugin writes (its source and the attempt's start), unless it has been silenced."""
        if silent or logical_date is None:
            return
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        record = {"state": state, "run_id": run_id, "clear_number": clear_number, "source": "airflow-plugin:default",
                  "start_date": now, "updated_at": now}  # fmt: skip
        if state in ("success", "failed"):
            record["end_date"] = now
        stack.etcd.put(stack.run_key(dag_id, canonical_partition(logical_date)), json.dumps(record), retry_s=30.0)

    stack.fake.on_state = plugin
    leader = stack.start_watcher("w1", COORDINATOR_AUDIT_INTERVAL_S="1")
    leader.wait_leading()

    first = new_partition()
    stack.trigger_root(first, ROOT_DAG)
    wait_for(lambda: stack.succeeded(LAST, first), f"{LAST} to succeed for {first} (the plugin writing)")
    assert plugin_records(stack)["status"] != "fail"

    silent = True
    second = new_partition()
    stack.trigger_root(second, ROOT_DAG)
    wait_for(
        lambda: (r := stack.run_record(LAST, second)) is not None and r.get("state") == "success",
        f"the audit to carry the cascade to {LAST} for {second}",
        timeout=90,
    )
    check = plugin_records(stack)
    assert check["status"] == "fail", check
    assert "stopped writing in default" in check["summary"], check
    assert "check-plugin" in check["fix"], check
    assert total(scrape(leader), "coordinator_audit_repairs_total", instance="default") >= 2

    silent = False
    third = new_partition()
    stack.trigger_root(third, ROOT_DAG)
    wait_for(lambda: stack.succeeded(LAST, third), f"{LAST} to succeed for {third} (the plugin writing again)")
    assert plugin_records(stack)["status"] == "ok"
