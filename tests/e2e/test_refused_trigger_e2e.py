"""A real Airflow 3.3 refusing a trigger (400: the DAG is not partitioned and does not accept a partition_key): the
watcher's POSTs counted in Airflow's own access log back off per key up to COORDINATOR_ERROR_RETRY_S instead of one
a second (semantics `trigger-errors`); the graph changed to trigger it by logical date creates the run once."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

from coordinator.core.model import RunState, TriggerStatus
from tests.e2e.harness import E2E, SESSION_GRAPH, wait_for

pytestmark = pytest.mark.e2e

SOURCE, REFUSED = "e2e_refused_source", "e2e_refused"
#: The test's cap (the default is 30 s: the same code, slower steps) and how long the refusals are counted. By hand,
#: ``E2E_REFUSED_CAP_S=30 E2E_REFUSED_WINDOW_S=600`` measures ten minutes with the default cap.
CAP_S = float(os.environ.get("E2E_REFUSED_CAP_S", "8"))
WINDOW_S = float(os.environ.get("E2E_REFUSED_WINDOW_S", "30"))
#: A trigger POST of the refused DAG in the api-server's access log (structlog's "request finished" with method and
#: path in either order; the path ends at dagRuns: not a run's own endpoints).
_POST = re.compile(rf"request finished.*(?=.*\bPOST\b).*/api/v2/dags/{REFUSED}/dagRuns(?![/\w])")


def _graph(key_format: str | None) -> dict[str, Any]:
    refused: dict[str, Any] = {"cron": "0 0 * * *"}
    if key_format is not None:
        refused["key_format"] = key_format
    dags = dict(SESSION_GRAPH["dags"])
    dags[SOURCE] = {"partitions": {"cron": "0 0 * * *"}}
    dags[REFUSED] = {"partitions": refused, "upstreams": [SOURCE]}
    return {**SESSION_GRAPH, "dags": dags}


def _posts(e2e: E2E) -> int:
    text = e2e.stack.log_file("api-server").read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines() if _POST.search(line))


def _most_posts(window_s: float) -> int:
    """The most POSTs ``window_s`` may see with the test's cap: the first, then steps of at least 0.5, 1, 2, 4 s and
    then CAP_S / 2 (each step drawn in the upper half of 1, 2, 4, 8 ... s), and two of slack for the window's edges."""
    steps, spent, count = [0.5, 1.0, 2.0], 0.0, 1
    while True:
        step = steps.pop(0) if steps else CAP_S / 2
        if spent + step > window_s:
            return count + 2
        spent, count = spent + step, count + 1


def test_a_refused_trigger_backs_off_in_airflows_access_log_and_a_graph_change_creates_it_once(e2e: E2E) -> None:
    """A dependent declared with a key_format whose Airflow DAG is schedule=None: Airflow answers 400 to every trigger;
    its POSTs in the api-server's access log stay within the backoff's bound (a retry a second made one per second),
    the ledger says the error and its next try; with the key_format removed the run is created exactly once."""
    deps = e2e.write_dependencies(_graph("%Y-%m-%dT%H:%M:%S"), name="refused-graph.json")
    watcher = e2e.start_watcher(deps, "--id", "e2e-refused-trigger", name="refused-trigger-watcher",
                                COORDINATOR_ERROR_RETRY_S=f"{CAP_S:g}")  # fmt: skip
    e2e.wait_for_leader(deps, "e2e-refused-trigger")
    p = e2e.new_partition()
    e2e.stack.trigger(SOURCE, e2e.run_id("refused"), p)
    e2e.wait_for_run_record(SOURCE, p, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success")
    before = _posts(e2e)
    wait_for(lambda: _posts(e2e) > before, 60, "the first refused POST in Airflow's access log")
    first = _posts(e2e)
    time.sleep(WINDOW_S)  # a rate needs a window; the test sends nothing meanwhile
    posts = _posts(e2e) - first + 1
    print(f"\nPOSTs of {REFUSED} in Airflow's access log: {posts} in {WINDOW_S:g} s (cap {CAP_S:g} s)")
    ledger = e2e.read_ledger(REFUSED, p)
    assert ledger is not None and ledger.status is TriggerStatus.ERROR, ledger
    assert "not a partitioned Dag" in (ledger.last_error or ""), ledger
    assert (ledger.errors or 0) >= 3 and ledger.retry_at is not None, ledger
    assert posts <= _most_posts(WINDOW_S), f"{posts} POSTs in {WINDOW_S:g} s: not backing off"
    assert e2e.runs(REFUSED, p) == []

    e2e.write_dependencies(_graph(None), name="refused-graph.json")  # triggered by logical date now
    e2e.wait_for_run_record(REFUSED, p, lambda r: r.state is RunState.SUCCESS, timeout_s=120, what="success")
    wait_for(lambda: (e2e.read_ledger(REFUSED, p) or ledger).status is TriggerStatus.DONE, 60, "the trigger done")
    assert len(e2e.runs(REFUSED, p)) == 1
    assert watcher.poll() is None
