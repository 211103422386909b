"""Downtime recovery on a real Airflow (docs/semantics.md, story 3): what happened while no watcher ran is acted on
once a watcher starts, exactly as if it had run throughout, and nothing done before is repeated.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from coordinator.core.model import RunState, run_id_for
from tests.e2e.harness import E2E, PIPELINES, SESSION_GRAPH, UPSTREAMS, assert_started_after, timeline

pytestmark = pytest.mark.e2e


def test_cascade_missed_while_the_watcher_was_down_completes_once_on_restart(e2e: E2E) -> None:
    """01 succeeding for a new partition while no watcher runs is cascaded once when a watcher starts; no duplicates."""
    deps = e2e.write_dependencies(SESSION_GRAPH, name="session-graph.json")
    # A first watcher adopts the graph (a DAG's definition applies to upstream successes after its adoption), then
    # stops: from here on nobody watches.
    e2e.start_watcher(deps, "--id", "e2e-downtime-before", name="downtime-watcher")
    e2e.wait_for_leader(deps, "e2e-downtime-before")
    e2e.stop_watchers()
    assert e2e.read_key(e2e.keys.leader) is None, "a stopped watcher resigns its leadership"

    partition, run_id = e2e.new_partition(), e2e.run_id("downtime")
    e2e.stack.trigger("01_pipeline", run_id, partition)
    e2e.stack.wait_for_run("01_pipeline", run_id, ["success"], timeout_s=90)
    e2e.wait_for_run_record("01_pipeline", partition, lambda r: r.state is RunState.SUCCESS, what="success")
    # Nothing acted while the watcher was down.
    assert all(e2e.runs(dag_id, partition) == [] for dag_id in PIPELINES[1:])
    ledger_before = e2e.revisions(e2e.keys.triggers)
    assert not [key for key in ledger_before if key.endswith(partition)]

    restarted_at = datetime.now(UTC)
    started = time.monotonic()
    watcher = e2e.start_watcher(deps, "--id", "e2e-downtime-after", name="downtime-watcher")
    e2e.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=150, what="success"
    )
    elapsed = time.monotonic() - started
    assert watcher.poll() is None, f"watcher exited; see {e2e.work_dir / 'downtime-watcher.log'}"

    runs = {dag_id: e2e.only_run(dag_id, partition) for dag_id in PIPELINES}
    for dag_id in PIPELINES[1:]:
        record, _ = e2e.read_run(dag_id, partition)
        ledger = e2e.read_ledger(dag_id, partition)
        assert runs[dag_id].run_id == run_id_for(partition) and runs[dag_id].state == "success", runs[dag_id]
        assert record is not None and record.clear_number == 0, (dag_id, record)
        assert ledger is not None and ledger.trigger_count == 1, (dag_id, ledger)
        assert_started_after(runs[dag_id], (runs[u] for u in UPSTREAMS[dag_id]))
    # The restarted watcher planned every partition it found and repeated nothing: every ledger entry written before
    # is untouched, and this partition's six entries are new.
    ledger_after = e2e.revisions(e2e.keys.triggers)
    rewritten = {key for key, rev in ledger_before.items() if ledger_after.get(key) != rev}
    assert not rewritten, f"entries decided before the downtime were decided again: {sorted(rewritten)}"
    mine = {e2e.keys.trigger_key(e2e.stack_node(dag_id), partition) for dag_id in PIPELINES[1:]}
    assert mine <= set(ledger_after) - set(ledger_before), sorted(set(ledger_after) - set(ledger_before))
    print(
        f"\ndowntime: watcher start -> 07 success in etcd {elapsed:.1f} s; "
        f"(s since watcher start) {timeline(runs.values(), restarted_at)}"
    )
