"""An etcd outage under a real Airflow: the plugin keeps the scheduler fast (it never waits for etcd), and once etcd
is back the watcher's REST audit repairs the run states the plugin lost, so the cascade proceeds.

This test stops etcd, so it has an etcd and an Airflow of its own (the session's must never be stopped; see
tests/conftest.py). Its plugin queue holds ONE record (COORDINATOR_PLUGIN_QUEUE_SIZE=1, default 10,000): with two
runs during the outage, the writer retries the first record and the queue holds the second, so at least two of the
four records (running and success of each run) are dropped, as a long outage would with the default queue. Only the
audit can bring those back.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable, Iterator

import pytest

from coordinator.core.model import RunState, run_id_for
from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from tests.e2e.harness import E2E, REPO, wait_for

pytestmark = pytest.mark.e2e

DAGS = ["01_pipeline", "02_pipeline", "03_pipeline"]
GRAPH = {"02_pipeline": "01_pipeline", "03_pipeline": "02_pipeline"}
#: Runs triggered together, with etcd up and then down.
BATCH = 2
#: How much slower a run may get during the outage. A listener that waited for etcd would add at least its write
#: timeout (2 s) per hook and run state; two cores shared with other work add noise of about a second.
SLOWER_ALLOWED_S = 3.0
AUDIT_INTERVAL_S = 3.0


@pytest.fixture
def outage_e2e(
    private_etcd: EtcdServer, airflow_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2E]:
    """A second Airflow with the plugin, on a private etcd; stopped by PID (watchers first) even on failure."""
    base = tmp_path_factory.mktemp("outage")
    dags = base / "dags"
    dags.mkdir()
    for name in [*DAGS, "example_pipeline"]:  # example_pipeline: the DAGs' shared task body
        shutil.copy2(REPO / "dags" / f"{name}.py", dags)
    stack = AirflowStack(
        home=base / "airflow",
        dags_folder=dags,
        etcd_endpoints=private_etcd.endpoint,
        prefix="/e2e-outage",
        extra_env={"PIPELINE_01_SCHEDULE": "none", "COORDINATOR_PLUGIN_QUEUE_SIZE": "1"},
        database_url=airflow_database("outage"),
    )
    env = E2E(stack=stack, etcd_endpoint=private_etcd.endpoint, prefix=stack.prefix, work_dir=base)
    try:
        stack.start()
        stack.wait_for_dags(DAGS)
        stack.unpause(DAGS)
        print(f"\noutage airflow up in {stack.started_in_s:.1f} s at {stack.url}, database {stack.database}")
        yield env
    finally:
        env.stop_watchers()
        stack.stop()


def run_batch(e2e: E2E, label: str, size: int) -> tuple[list[str], list[float]]:
    """Trigger 01_pipeline for ``size`` new partitions at once; wait for all to succeed (REST only). Returns the
    partitions and each run's duration from queued to end, by Airflow's own clock."""
    partitions = [e2e.new_partition() for _ in range(size)]
    run_ids = [e2e.run_id(label) for _ in partitions]
    for partition, run_id in zip(partitions, run_ids, strict=True):
        e2e.stack.trigger("01_pipeline", run_id, partition)
    durations = []
    for run_id in run_ids:
        run = e2e.stack.wait_for_run("01_pipeline", run_id, ["success", "failed"], timeout_s=90)
        assert run["state"] == "success", run
        found = e2e.only_run("01_pipeline", run["logical_date"])
        assert found.queued_at is not None and found.end_date is not None
        durations.append((found.end_date - found.queued_at).total_seconds())
    return partitions, durations


def wait_cascaded(e2e: E2E, partitions: list[str]) -> None:
    for partition in partitions:
        e2e.wait_for_run_record(
            "03_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success"
        )


def test_scheduler_stays_fast_while_etcd_is_down_and_the_audit_repairs_lost_states(
    outage_e2e: E2E, private_etcd: EtcdServer
) -> None:
    """With etcd down, runs finish as fast as with it up; once it is back the audit repairs the lost states.
    Slow by design: real Airflow runs timed with etcd up and down, an outage outlasting the lease, then the audit."""
    e2e = outage_e2e
    deps = e2e.write_dependencies(GRAPH, name="outage-graph.json")
    e2e.start_watcher(
        deps, "--id", "e2e-outage", name="outage-watcher", COORDINATOR_AUDIT_INTERVAL_S=str(AUDIT_INTERVAL_S)
    )
    e2e.wait_for_leader(deps, "e2e-outage")
    run_batch(e2e, "warmup", 1)  # a fresh Airflow's first task run is slow (imports, first parse)

    # Baseline, etcd up: the same batch as during the outage; its cascades finish before the outage starts.
    baseline_partitions, baseline = run_batch(e2e, "baseline", BATCH)
    wait_cascaded(e2e, baseline_partitions)

    private_etcd.kill()
    killed = time.monotonic()
    partitions, during = run_batch(e2e, "outage", BATCH)
    scheduler_log = e2e.stack.log_file("scheduler").read_text(encoding="utf-8", errors="replace")
    assert "plugin.write_retry" in scheduler_log
    assert "plugin.dropped reason=queue_full" in scheduler_log
    assert all(e2e.runs("02_pipeline", p) == [] for p in partitions), "nothing can be decided without etcd"
    print(
        f"\n01_pipeline queued -> end, {BATCH} runs at once: etcd up {statistics.mean(baseline):.2f} s "
        f"(max {max(baseline):.2f}), etcd down {statistics.mean(during):.2f} s (max {max(during):.2f})"
    )
    assert max(during) <= max(baseline) + SLOWER_ALLOWED_S, (baseline, during)

    # Keep etcd down until the watcher gave up its leadership (its lease may have expired): the outage outlasts the
    # lease, so the repair below also covers the watcher winning the election again.
    watcher_log = e2e.work_dir / "outage-watcher.log"
    wait_for(lambda: "leader.lost" in watcher_log.read_text(encoding="utf-8"), 30, "the watcher to lose leadership")
    down_for = time.monotonic() - killed

    private_etcd.start()  # same ports and data: the plugin and the watcher reconnect by themselves
    back = time.monotonic()
    records = {
        p: e2e.wait_for_run_record(
            "01_pipeline", p, lambda r: r.state is RunState.SUCCESS, timeout_s=60, what="success after the outage"
        )
        for p in partitions
    }
    repaired_in = time.monotonic() - back
    sources = sorted(record.source for record in records.values())
    assert "audit:default" in sources, f"the dropped successes were written by {sources}, not by the audit"
    assert "audit.repaired" in watcher_log.read_text(encoding="utf-8")

    wait_cascaded(e2e, partitions)
    cascaded_in = time.monotonic() - back
    for partition in partitions:
        for dag_id in ["02_pipeline", "03_pipeline"]:
            run = e2e.only_run(dag_id, partition)
            record, _ = e2e.read_run(dag_id, partition)
            ledger = e2e.read_ledger(dag_id, partition)
            assert run.run_id == run_id_for(partition) and run.state == "success", run
            assert record is not None and record.clear_number == 0, record
            assert ledger is not None and ledger.trigger_count == 1, ledger
    print(
        f"etcd down {down_for:.1f} s; back -> 01 successes in etcd {repaired_in:.1f} s (by {', '.join(sources)}); "
        f"-> cascade done {cascaded_in:.1f} s"
    )
