"""The watcher's HTTP listener against real watcher processes and a real etcd: /metrics, /healthz, /readyz, --http.

Readiness must follow etcd's answers, not the watch stream: a stopped etcd (SIGSTOP) keeps its TCP connections open
and silent, so these tests freeze it and always thaw it again (SIGCONT in a finally).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.runtime.spec_file import load_spec
from tests.scenario.conftest import DOWNSTREAM, Stack, WatcherProc, new_partition, wait_for

pytestmark = pytest.mark.scenario


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET (a 503 is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def scrape(watcher: WatcherProc) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the watcher's /metrics, parsed by the Prometheus client's parser: (name, labels) -> value."""
    status, body = get(watcher.http_url() + "/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def probe(watcher: WatcherProc, path: str) -> tuple[int, dict[str, Any]]:
    status, body = get(watcher.http_url() + path)
    return status, json.loads(body)


@contextlib.contextmanager
def frozen(stack: Stack) -> Iterator[None]:
    """etcd stopped with SIGSTOP for the block, thawed with SIGCONT whatever happens."""
    assert stack.server is not None and stack.server.pid is not None
    pid = stack.server.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_metrics_on_leader_and_standby_follow_a_cascade(stack: Stack) -> None:
    """/metrics parses; leader 1 on the leader, 0 on the standby; a cascade raises triggers and Airflow request
    counters on the leader only; view_keys matches etcd; both processes are alive and ready."""
    leader = stack.start_watcher("w1")
    standby = stack.start_watcher("w2", ready="loaded")
    before = scrape(leader)
    assert total(before, "coordinator_leader") == 1
    assert total(scrape(standby), "coordinator_leader") == 0
    assert total(before, "coordinator_build_info", version="0.1.0") == 1
    assert total(before, "coordinator_graph_info", digest=load_spec(stack.deps).digest) == 1

    partition = new_partition()
    stack.trigger_root(partition)
    stack.wait_confirmed(partition)
    stack.settle()
    after = scrape(leader)
    # One confirmed intent per downstream DAG: a create, or (after an error on a loaded machine) the resume of one.
    confirmed = total(after, "coordinator_triggers_total", instance="default", result="ok")
    assert confirmed - total(before, "coordinator_triggers_total", result="ok") == len(DOWNSTREAM)
    assert total(after, "coordinator_triggers_total", action="create", result="ok") >= 1
    assert total(after, "coordinator_airflow_requests_total", instance="default", method="POST", status="200") > (
        total(before, "coordinator_airflow_requests_total", method="POST", status="200")
    )
    assert total(after, "coordinator_airflow_request_seconds_count") > 0
    assert total(after, "coordinator_reconcile_seconds_count") > 0
    assert total(after, "coordinator_pending_intents") == 0
    assert total(scrape(standby), "coordinator_triggers_total") == 0, "a standby never acts"

    in_etcd = sum(len(stack.etcd.items(f"{stack.prefix}/{kind}/")) for kind in ("runs", "triggers"))
    for watcher in (leader, standby):
        wait_for(lambda w=watcher: total(scrape(w), "coordinator_view_keys") == in_etcd,
                 f"view_keys of {watcher.id} == {in_etcd} keys in etcd")  # fmt: skip
        assert total(scrape(watcher), "coordinator_watch_revision") >= stack.etcd.revision() - 1
        healthz = {"status": "ok", "reason": "ok", "detail": "the reconcile loop turns"}
        assert probe(watcher, "/healthz") == (200, healthz)
        status, body = probe(watcher, "/readyz")
        assert (status, body["status"]) == (200, "ok"), body


def test_airflow_refusals_show_as_errors_and_failed_intents(stack: Stack) -> None:
    """A DAG missing in Airflow (404) shows as create/error results, 404 answers and a failed pending intent; once it
    appears, the intent is confirmed and the gauges return to 0."""
    leader = stack.start_watcher("w1")
    stack.fake.set_missing("03_pipeline")
    partition = new_partition()
    stack.trigger_root(partition)

    def refused() -> bool:
        s = scrape(leader)
        return (total(s, "coordinator_failed_intents") == 1 and total(s, "coordinator_pending_intents") == 1
                and total(s, "coordinator_triggers_total", action="create", result="error") >= 1
                and total(s, "coordinator_airflow_requests_total", method="POST", status="404") >= 1)  # fmt: skip

    wait_for(refused, "the 404 counted as an error result, a 404 answer and one failed intent")
    stack.fake.set_missing("03_pipeline", False)
    stack.wait_confirmed(partition)
    wait_for(lambda: total(scrape(leader), "coordinator_pending_intents") == 0, "no pending intent left")
    assert total(scrape(leader), "coordinator_failed_intents") == 0


def test_readyz_fails_while_etcd_is_frozen_and_recovers(private_stack: Stack) -> None:
    """With etcd stopped (SIGSTOP: connections open, no answers) /readyz turns 503 with a JSON reason while /healthz
    stays 200; after SIGCONT /readyz is 200 again and the failed probes were counted."""
    stack = private_stack
    leader = stack.start_watcher("w1")
    standby = stack.start_watcher("w2", ready="loaded")
    url = leader.http_url()
    wait_for(lambda: probe(leader, "/readyz")[0] == 200, "leader ready")
    with frozen(stack):
        for watcher in (leader, standby):
            _, body = wait_for(lambda w=watcher: (r := probe(w, "/readyz"))[0] == 503 and r,
                               f"/readyz 503 on {watcher.id} while etcd is frozen")  # fmt: skip
            assert body["status"] == "fail" and body["reason"] == "etcd_unavailable", body
            assert "etcd" in body["detail"], body
            assert probe(watcher, "/healthz")[0] == 200, "a frozen etcd is no reason to restart the watcher"
        assert total(scrape(leader), "coordinator_etcd_up") == 0
    for watcher in (leader, standby):
        wait_for(lambda w=watcher: probe(w, "/readyz")[0] == 200, f"/readyz 200 on {watcher.id} after SIGCONT")
    assert total(scrape(leader), "coordinator_etcd_errors_total", op="probe") > 0
    assert total(scrape(leader), "coordinator_etcd_up") == 1
    assert leader.http_url() == url and leader.alive and standby.alive


def test_readyz_is_503_until_the_view_is_loaded(private_stack: Stack) -> None:
    """A watcher started while etcd is frozen answers /healthz 200 and /readyz 503 "loading" until it has loaded its
    view, then 200."""
    stack = private_stack
    with frozen(stack):
        # A long etcd deadline: the watcher must still be waiting for its first answer when the test asks.
        watcher = stack.start_watcher("w1", ready="none", COORDINATOR_ETCD_TIMEOUT_S="120")
        status, body = probe(watcher, "/readyz")
        assert (status, body["reason"]) == (503, "loading"), body
        assert probe(watcher, "/healthz")[0] == 200
    watcher.wait_leading(timeout=60)
    wait_for(lambda: probe(watcher, "/readyz")[0] == 200, "/readyz 200 once loaded")


def test_http_off_opens_no_port(stack: Stack) -> None:
    """With --http off (COORDINATOR_HTTP=off) the watcher runs and leads without listening on any port."""
    watcher = stack.start_watcher("w1", COORDINATOR_HTTP="off")
    connections = psutil.Process(watcher.pid).net_connections(kind="inet")
    assert [c for c in connections if c.status == psutil.CONN_LISTEN] == []
    assert watcher.lines(r"http\.listening") == []


@pytest.mark.parametrize(
    "value",
    ["nonsense", "127.0.0.1", "127.0.0.1:", ":9465", "127.0.0.1:99999", "127.0.0.1:http", "[::1]"],
    ids=["word", "no-port", "empty-port", "no-host", "port-too-big", "port-not-a-number", "v6-no-port"],
)
def test_bad_http_value_exits_2(stack: Stack, value: str) -> None:
    """A bad --http value exits 2 naming the setting and the value, before reaching etcd."""
    result = stack.cli("watch", "--http", value, airflow=True, check=False)
    assert result.returncode == 2, result
    assert "COORDINATOR_HTTP" in result.stderr and repr(value) in result.stderr, result.stderr


def test_bad_http_environment_value_exits_2(stack: Stack) -> None:
    """A bad COORDINATOR_HTTP exits 2 like the flag does."""
    cmd = ["watch", "--etcd", stack.endpoint, "--prefix", stack.prefix, "--deps", str(stack.deps)]
    result = _run(stack, cmd, COORDINATOR_HTTP="everywhere")
    assert result.returncode == 2 and "'everywhere'" in result.stderr, result


def test_port_in_use_fails_clearly(stack: Stack) -> None:
    """A watcher whose --http port is taken exits 2 saying which address could not be bound."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = stack.cli("watch", "--http", address, airflow=True, check=False, timeout=60)
    assert result.returncode == 2, result
    assert f"cannot listen on {address}" in result.stderr and "in use" in result.stderr, result.stderr


def _run(stack: Stack, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return stack.command(*args, **env)
