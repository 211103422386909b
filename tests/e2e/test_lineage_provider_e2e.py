"""Airflow's own OpenLineage provider as a fact source (issue 36): a second real Airflow 3.3 whose only link to the
coordinator is ``[openlineage] transport`` and ``namespace`` sends its DAG-run events with
``apache-airflow-providers-openlineage`` to a real receiver, which makes that Airflow's DAG an upstream
(``{prefix}/runs/ol_airflow/<dag>/<logical date>``) with no plugin.

What the provider (2.20.3) sends, as this test observes and asserts it:

- One OpenLineage run per DAG run: job name = the dag id, namespace = ``[openlineage] namespace``; START when the
  scheduler starts the run (event time = the run's start_date), COMPLETE or FAIL when it ends (event time = its
  end_date); facets ``nominalTime`` (``nominalStartTime`` = the data interval start: the logical date for a manual
  run of a ``schedule=None`` DAG), ``airflowDagRun``, ``processing_engine``, ``tags`` (+ ``airflowState`` at the
  end); no ``parent`` facet. So ``"partition": "nominal"`` places it on the logical date.
- One run per task instance: job name ``<dag>.<task>``, START and COMPLETE/FAIL, each with a ``parent`` facet
  naming the DAG run (namespace, dag id, the DAG run's runId; ``root`` the same). The mapping names the dag id only,
  so the receiver answers them 2xx and ignores them: task facts need mappings (and nodes) of their own.
- The DAG run's runId is not random: the provider derives it from (namespace, dag id, logical date, clear number).
  A clear therefore arrives as a NEW runId: a new generation in etcd (running, then success), as with the plugin.
  But deleting the DAG run and triggering the same logical date again gives clear number 0 again, hence the FIRST
  run's runId: the receiver takes the new START for a duplicate and the new FAIL for a late event of an older run
  (semantics rule 18c, rules 1 and 4), so etcd keeps the cleared run's success while Airflow's run has failed.

Airflow has no switch per plugin (it loads every ``airflow.plugins`` entry point) and the coordinator plugin is
installed in this environment: it turns itself off when its settings are invalid (``plugin.disabled``, asserted from
the scheduler's log), which the second Airflow's queue size of 0 does; its prefix is one nobody reads besides. With
the plugin writing in the same scheduler, the provider's DAG START was lost in one of this test's first two runs: the
provider forks its event process pool at the first DAG event, the plugin's gRPC thread was in a call at that moment
(both react to the same run), and with grpcio's fork support on (its default) such a child can die (BrokenProcessPool;
the event is dropped, the pool rebuilt at the next event). A plugin-less Airflow, what this path is for, is tested.

The HTTP transport is the one a user configures (``api_key`` auth); it sits inside a composite transport whose second
member writes every event to a file, only so the test can read what was sent (the issue's tee).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.core.model import NodeId, RunRecord, RunState, canonical_partition, parse_run_record
from coordinator.lineage.tokens import hash_token
from devtools.airflow_stack import AirflowStack
from devtools.etcd_server import EtcdServer
from tests.e2e.harness import E2E, wait_for
from tests.lineage.receiver_proc import ReceiverProc

pytestmark = pytest.mark.e2e

NAMESPACE = "airflow_ol_prod"
TOKEN = "airflow-ol-secret-token"
INSTANCE = "ol_airflow"
DAG_ID = "e2e_ol_producer"
TASKS = ("extract", "load")
LOGICAL_DATE = datetime(2026, 3, 1, tzinfo=UTC)
PARTITION = canonical_partition(LOGICAL_DATE)
SOURCE = f"openlineage:{NAMESPACE}"
RUN_TIMEOUT_S = 90.0

#: The producer: a plain two-task DAG run only by the test (schedule=None); ``{"fail": true}`` in conf fails it.
DAG_SOURCE = f'''"""Written by tests/e2e/test_lineage_provider_e2e.py: a producer known only through OpenLineage."""
from datetime import UTC, datetime

from airflow.sdk import DAG, get_current_context, task


@task
def extract() -> None:
    if get_current_context()["dag_run"].conf.get("fail"):
        raise RuntimeError("asked to fail (conf fail=true)")


@task
def load() -> None:
    pass


with DAG(dag_id="{DAG_ID}", schedule=None, start_date=datetime(2000, 1, 1, tzinfo=UTC), catchup=False,
         default_args={{"retries": 0}}):
    extract() >> load()
'''

#: The receiver's graph: the DAG as a node of instance ol_airflow, a dependent in the default instance, and the
#: mapping of the DAG run's job (the dag id) onto the node with the nominal time as partition.
GRAPH: dict[str, Any] = {
    "version": 1,
    "instances": {INSTANCE: {"description": "an Airflow known only through its OpenLineage provider"}},
    "dags": {f"{INSTANCE}/{DAG_ID}": {}, "e2e_ol_dependent": {"upstreams": f"{INSTANCE}/{DAG_ID}"}},
    "openlineage": [
        {"namespace": NAMESPACE, "job": DAG_ID, "instance": INSTANCE, "dag": DAG_ID, "partition": "nominal"}
    ],
}
RUN_STATE_LINE = re.compile(r"lineage\.run_state node=(\S+) partition=(\S+) state=(\w+) run_id=(\S+)")


@dataclass
class OpenLineageAirflow:
    """The receiver, the second Airflow that sends to it, and where each writes."""

    receiver: ReceiverProc
    stack: AirflowStack
    etcd: E2E  # read-only helpers on the receiver's prefix (its ``stack`` is the second Airflow)
    plugin_prefix: str
    events_dir: Path

    def run_state(self) -> RunRecord | None:
        raw = self.etcd.read_key(self.etcd.keys.run_key(NodeId(INSTANCE, DAG_ID), PARTITION))
        if raw is None:
            return None
        record, problem = parse_run_record(raw)
        assert record is not None, problem
        return record

    def lineage_runs(self) -> dict[str, dict[str, Any]]:
        """runId -> the receiver's record of that run (``{prefix}/lineage/ol_airflow/<runId>``)."""
        found = self.etcd.read_prefix(self.etcd.keys.lineage)
        return {key.rsplit("/", 1)[1]: json.loads(value) for key, value in found.items()}

    def events(self) -> list[dict[str, Any]]:
        """Every event the provider sent, in the order written (the file copy of the composite transport)."""
        return [json.loads(path.read_text()) for path in sorted(self.events_dir.glob("event-*.json"))]

    def sent(self, job: str, run_id: str, event_type: str) -> list[dict[str, Any]] | None:
        """All events sent so far, once one of ``job`` and ``run_id`` of ``event_type`` is among them."""
        events = self.events()
        wanted = (job, run_id, event_type)
        return events if any((e["job"]["name"], e["run"]["runId"], e["eventType"]) == wanted for e in events) else None

    def outcomes(self) -> dict[str, float]:
        """The receiver's count of events by outcome (accepted, recorded, duplicate, ignored)."""
        kinds = ("accepted", "recorded", "duplicate", "ignored")
        return {k: self.receiver.metric("coordinator_lineage_events_total", outcome=k) for k in kinds}


@pytest.fixture
def ol_airflow(
    etcd_server: EtcdServer, etcd_prefix: str, airflow_database: Callable[[str], str], tmp_path: Path
) -> Iterator[OpenLineageAirflow]:
    """The receiver (started first), then a second Airflow 3.3 whose OpenLineage provider sends to it; both stopped
    by PID afterwards, even on failure."""
    (tmp_path / "dependencies.json").write_text(json.dumps(GRAPH, indent=2))
    entry = {"name": "airflow-ol", "sha256": hash_token(TOKEN), "namespaces": ["airflow_ol_*"]}
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": [entry]}))
    receiver = ReceiverProc(etcd_server.endpoint, etcd_prefix, tmp_path)
    events_dir = tmp_path / "ol-events"
    events_dir.mkdir()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_SOURCE)
    transport = {
        "type": "composite",
        "transports": [
            {"type": "http", "url": receiver.url, "auth": {"type": "api_key", "apiKey": TOKEN}},
            # debug_mode: one file per event, named after its time, job and type.
            {"type": "file", "log_file_path": str(events_dir / "event"), "debug_mode": True},
        ],
    }
    plugin_prefix = f"{etcd_prefix}-plugin-unread"  # deleted with etcd_prefix (a prefix delete of the bare name)
    stack = AirflowStack(
        home=tmp_path / "airflow",
        dags_folder=dags,
        instance=INSTANCE,
        etcd_endpoints=etcd_server.endpoint,
        prefix=plugin_prefix,
        extra_env={
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
            # The coordinator plugin off (module docstring): an invalid setting makes it log plugin.disabled.
            "COORDINATOR_PLUGIN_QUEUE_SIZE": "0",
        },
        database_url=airflow_database("lineage"),
    )
    try:
        receiver.start()
        stack.start()
        stack.wait_for_dags([DAG_ID])
        stack.unpause([DAG_ID])
        print(
            f"\nOpenLineage airflow up in {stack.started_in_s:.1f} s at {stack.url}, database {stack.database}; "
            f"receiver {receiver.url}"
        )
        yield OpenLineageAirflow(
            receiver=receiver,
            stack=stack,
            etcd=E2E(stack=stack, etcd_endpoint=etcd_server.endpoint, prefix=etcd_prefix, work_dir=tmp_path),
            plugin_prefix=plugin_prefix,
            events_dir=events_dir,
        )
    finally:
        try:
            stack.stop()
        finally:
            receiver.stop()


def first_seen(ol: OpenLineageAirflow, done: Callable[[RunRecord], bool]) -> tuple[RunRecord, datetime]:
    """Poll the node's run-state key until ``done`` holds; the record and when it was first seen (host clock, as
    Airflow's dates are)."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    record: RunRecord | None = None
    while time.monotonic() < deadline:
        record = ol.run_state()
        if record is not None and done(record):
            return record, datetime.now(UTC)
        time.sleep(0.05)
    raise AssertionError(f"{INSTANCE}/{DAG_ID} {PARTITION}: last {record!r}\nreceiver log:\n{ol.receiver.log()}")


def run_states_logged(ol: OpenLineageAirflow) -> list[tuple[str, str]]:
    """(state, runId) of every run state the receiver wrote for the node, from its log, in order."""
    found = [m.groups() for m in RUN_STATE_LINE.finditer(ol.receiver.log())]
    assert all((node, partition) == (f"{INSTANCE}/{DAG_ID}", PARTITION) for node, partition, _, _ in found), found
    return [(state, run_id) for _, _, state, run_id in found]


def test_airflow_openlineage_provider_makes_its_dag_runs_upstreams_a_clear_a_new_generation_a_retrigger_not(
    ol_airflow: OpenLineageAirflow,
) -> None:
    """A DAG run of an Airflow with only the OpenLineage provider configured becomes success at its logical date
    (source openlineage:<ns>), task events ignored; a clear is a new generation; a deleted and re-triggered run is
    not seen (same runId)."""
    ol, stack = ol_airflow, ol_airflow.stack
    run_id = "ol_manual_1"
    stack.trigger(DAG_ID, run_id, PARTITION)

    # 1. The DAG run's end -> success in etcd, from the provider's COMPLETE alone.
    record, seen = first_seen(ol, lambda r: r.state is RunState.SUCCESS)
    run = stack.wait_for_run(DAG_ID, run_id, ["success"], timeout_s=RUN_TIMEOUT_S)
    start, end = datetime.fromisoformat(run["start_date"]), datetime.fromisoformat(run["end_date"])
    assert record.source == SOURCE and record.clear_number == 0, record
    assert (record.start_date, record.end_date) == (start, end), (record, run)  # the event times are Airflow's dates
    first_ol_run = record.run_id
    lineage = ol.lineage_runs()
    assert set(lineage) == {first_ol_run}, lineage
    assert (lineage[first_ol_run]["job"], set(lineage[first_ol_run]["events"])) == (DAG_ID, {"START", "COMPLETE"})
    print(f"\nDAG run end -> success in etcd through the OpenLineage provider: {(seen - end).total_seconds():.2f} s")

    # 2. The clear: Airflow reruns the same DAG run (same run id, logical date; clear number 1): a new runId.
    stack.clear(DAG_ID, run_id)
    record2, seen2 = first_seen(ol, lambda r: r.state is RunState.SUCCESS and r.run_id != first_ol_run)
    run2 = stack.wait_for_run(DAG_ID, run_id, ["success"], timeout_s=RUN_TIMEOUT_S)
    end2 = datetime.fromisoformat(run2["end_date"])
    assert end2 > end and record2.end_date == end2, (run, run2, record2)
    assert record2.source == SOURCE and record2.clear_number == 0, record2  # the generation is the runId
    second_ol_run = record2.run_id
    print(f"after the clear: DAG run end -> the new generation's success {(seen2 - end2).total_seconds():.2f} s")
    # The receiver wrote each generation in order, running then success.
    generations = [("running", first_ol_run), ("success", first_ol_run), ("running", second_ol_run),
                   ("success", second_ol_run)]  # fmt: skip
    assert run_states_logged(ol) == generations, ol.receiver.log()

    # 3. Delete the run and trigger the same logical date again, failing: clear number 0 again, so the first runId.
    status, body = stack.request("DELETE", f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id)}")
    assert status == 204, (status, body)
    stack.trigger(DAG_ID, "ol_manual_2", PARTITION, {"fail": True})
    stack.wait_for_run(DAG_ID, "ol_manual_2", ["failed"], timeout_s=RUN_TIMEOUT_S)
    events = wait_for(lambda: ol.sent(DAG_ID, first_ol_run, "FAIL"), 30, "the re-triggered run's FAIL, first runId")
    wait_for(lambda: "FAIL" in ol.lineage_runs()[first_ol_run]["events"], 30, "the FAIL in the first run's record")
    # Nothing changed for a dependent: the cleared run's success stays; no new run state was written.
    assert ol.run_state() == record2, ol.run_state()
    assert run_states_logged(ol) == generations, ol.receiver.log()
    assert set(ol.lineage_runs()) == {first_ol_run, second_ol_run}
    assert set(ol.lineage_runs()[first_ol_run]["events"]) == {"START", "COMPLETE", "FAIL"}

    # What the provider sent (the file copy of every event).
    for event in events:
        print(f"  {event['eventType']:<8} {event['job']['name']:<24} {event['eventTime']} run {event['run']['runId']}"
              f" facets {sorted(event['run'].get('facets', {}))}")  # fmt: skip
    assert {e["job"]["namespace"] for e in events} == {NAMESPACE}
    dag_events = [e for e in events if e["job"]["name"] == DAG_ID]
    task_events = [e for e in events if e["job"]["name"] != DAG_ID]
    assert [(e["run"]["runId"], e["eventType"]) for e in dag_events] == [
        (first_ol_run, "START"), (first_ol_run, "COMPLETE"), (second_ol_run, "START"), (second_ol_run, "COMPLETE"),
        (first_ol_run, "START"), (first_ol_run, "FAIL"),
    ], dag_events  # fmt: skip
    for event in dag_events:
        facets = event["run"]["facets"]
        assert datetime.fromisoformat(facets["nominalTime"]["nominalStartTime"]) == LOGICAL_DATE, facets
        assert "parent" not in facets and "airflowDagRun" in facets, sorted(facets)
    # Task runs: <dag>.<task>, each naming its DAG run in the parent facet; the mapping matches none of them.
    assert {e["job"]["name"] for e in task_events} == {f"{DAG_ID}.{task}" for task in TASKS}, task_events
    for event in task_events:
        parent = event["run"]["facets"]["parent"]
        assert (parent["job"]["namespace"], parent["job"]["name"]) == (NAMESPACE, DAG_ID), parent
        assert parent["run"]["runId"] in (first_ol_run, second_ol_run), parent
    # Every event the provider sent reached the receiver and was answered 2xx: 4 accepted (two generations), the
    # re-triggered run's START a duplicate and its FAIL recorded in the old run's record only, the tasks ignored.
    assert ol.outcomes() == {"accepted": 4, "recorded": 1, "duplicate": 1, "ignored": len(task_events)}
    assert ol.receiver.metric("coordinator_lineage_refused_total") == 0
    # The coordinator plugin was off in that Airflow: it wrote nothing, anywhere.
    assert "plugin.disabled" in stack.log_file("scheduler").read_text(errors="replace")
    assert ol.etcd.read_prefix(ol.plugin_prefix + "/") == {}
