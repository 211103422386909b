"""The listener's pieces without a watcher: address parsing, probe verdicts, the WSGI dispatcher on a real socket,
the metrics object's registry and the state gauges read from a view."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from coordinator.core.model import KeyLayout, NodeId, TriggerAction, TriggerRecord, TriggerStatus, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.errors import ConfigError
from coordinator.lineage.receiver import Receiver
from coordinator.runtime.health import READY_WITHIN_S, STALL_S, Health, watcher_state
from coordinator.runtime.http import Listener, serve
from coordinator.runtime.metrics import Metrics, WatcherState
from coordinator.runtime.settings import ListenAddress, Settings, parse_listen
from devtools.prometheus import RULES


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(url: str, method: str = "GET") -> tuple[int, bytes, str]:
    """Status, body and content type of one request (an error status is an answer, not an exception)."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def samples(body: bytes) -> dict[str, float]:
    """Unlabelled samples by name, and labelled ones as name{k=v,...}, parsed by the Prometheus client's parser."""
    result: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            result[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return result


STATE = WatcherState(
    leader=True, watch_revision=42, view_keys=7, view_partitions=2, bad_values=1, pending_intents=3,
    failed_intents=1, actions_in_flight=2, graph_digest="abc123", graph_dags=4, graph_invalid=False, watchers=2,
)  # fmt: skip


@pytest.fixture
def served() -> Iterator[tuple[str, Metrics, Health, Clock]]:
    clock = Clock()
    metrics, health = Metrics(), Health(clock)
    with serve(ListenAddress("127.0.0.1", 0), metrics, health) as listener:
        yield f"http://127.0.0.1:{listener.address.port}", metrics, health, clock


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9465", ListenAddress("127.0.0.1", 9465)),
        ("0.0.0.0:0", ListenAddress("0.0.0.0", 0)),
        ("[::1]:9465", ListenAddress("::1", 9465)),
        ("localhost:80", ListenAddress("localhost", 80)),
        ("off", None),
        (" OFF ", None),
    ],
    ids=["loopback", "any-free-port", "ipv6", "name", "off", "off-any-case"],
)
def test_parse_listen_accepts(text: str, expected: ListenAddress | None) -> None:
    """HOST:PORT, [v6]:PORT and off are understood."""
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    "text", ["", "9465", "host", ":9465", "host:", "host:99999", "host:-1", "host:x"],
    ids=["empty", "port-only", "host-only", "no-host", "no-port", "port-too-big", "negative", "not-a-number"],
)  # fmt: skip
def test_parse_listen_rejects(text: str) -> None:
    """Anything else is a ValueError naming the setting and the value; Settings turns it into a validation error."""
    with pytest.raises(ValueError, match=r"COORDINATOR_HTTP"):
        parse_listen(text)
    with pytest.raises(ValueError, match=r"COORDINATOR_HTTP"):
        Settings(http=text)


def test_default_listens_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a setting the listener binds 127.0.0.1:9465 (not reachable from other hosts)."""
    monkeypatch.delenv("COORDINATOR_HTTP", raising=False)
    assert Settings().http_address == ListenAddress("127.0.0.1", 9465)


def test_liveness_fails_after_a_stall() -> None:
    """/healthz's verdict is ok while the loop beats, and 'stalled' once it has not for longer than STALL_S."""
    clock = Clock()
    health = Health(clock)
    health.view_loaded()
    assert health.liveness().ok
    clock.now += STALL_S + 1
    verdict = health.liveness()
    assert (verdict.ok, verdict.reason) == (False, "stalled")
    health.beat()
    assert health.liveness().ok


def test_a_view_loading_longer_than_a_stall_is_alive_until_the_start_timeout() -> None:
    """While the view loads, /healthz is ok past STALL_S (a big store is no stall) and fails with 'start_timeout'
    only past the start timeout; once loaded, the stall clock counts from the load."""
    clock = Clock()
    health = Health(clock, start_timeout_s=300)
    clock.now += STALL_S * 3
    assert health.liveness().ok and not health.readiness().ok
    clock.now += 300
    verdict = health.liveness()
    assert (verdict.ok, verdict.reason) == (False, "start_timeout") and "COORDINATOR_START_TIMEOUT_S" in verdict.detail
    health.view_loaded()
    assert health.liveness().ok
    clock.now += STALL_S + 1
    assert health.liveness().reason == "stalled"


def test_readiness_needs_a_loaded_view_and_a_recent_etcd_answer() -> None:
    """/readyz's verdict: loading until the view is loaded; then ok only while etcd's last probe answered recently
    and the latest one did not fail."""
    clock = Clock()
    health = Health(clock)
    assert health.readiness().reason == "loading"
    health.loaded = True
    assert health.readiness().reason == "etcd_unavailable", "no answer yet"
    health.etcd_answered()
    assert health.readiness().ok
    health.etcd_failed("DEADLINE_EXCEEDED")
    verdict = health.readiness()
    assert (verdict.ok, verdict.reason) == (False, "etcd_unavailable") and "DEADLINE_EXCEEDED" in verdict.detail
    health.etcd_answered()
    clock.now += READY_WITHIN_S + 0.5  # a probe hanging without failing
    assert not health.readiness().ok


def test_probes_answer_json_with_200_or_503(served: tuple[str, Metrics, Health, Clock]) -> None:
    """/healthz and /readyz answer JSON status, reason and detail, with 200 or 503 as the verdict says."""
    url, _, health, clock = served
    status, body, ctype = request(url + "/readyz")
    assert (status, ctype) == (503, "application/json")
    assert json.loads(body) == {"status": "fail", "reason": "loading", "detail": "the view is not loaded from etcd yet"}
    health.loaded = True
    health.etcd_answered()
    status, body, _ = request(url + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert request(url + "/healthz")[0] == 200
    clock.now += STALL_S + 1
    status, body, _ = request(url + "/healthz")
    assert status == 503 and json.loads(body)["reason"] == "stalled"


def test_metrics_page_parses_and_shows_state_and_counters(served: tuple[str, Metrics, Health, Clock]) -> None:
    """/metrics is Prometheus text the client's parser reads: state gauges from the bound reader, counters as fed."""
    url, metrics, _, _ = served
    metrics.bind_state(lambda: STATE)
    metrics.airflow_request("default", "POST", "200", 0.03)
    metrics.airflow_request("default", "POST", "timeout", 10.0)
    metrics.action_result("default", "create", "ok")
    metrics.etcd_error("probe", "DEADLINE_EXCEEDED")
    metrics.etcd_probe(77)
    status, body, ctype = request(url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    got = samples(body)
    assert got["coordinator_leader"] == 1 and got["coordinator_watch_revision"] == 42
    assert got["coordinator_view_keys"] == 7 and got["coordinator_pending_intents"] == 3
    assert got["coordinator_graph_info{digest=abc123}"] == 1 and got["coordinator_watchers"] == 2
    assert got["coordinator_airflow_requests_total{instance=default,method=POST,status=timeout}"] == 1
    assert got["coordinator_airflow_request_seconds_count{instance=default,method=POST}"] == 2
    assert got["coordinator_triggers_total{action=create,instance=default,result=ok}"] == 1
    assert got["coordinator_etcd_errors_total{code=DEADLINE_EXCEEDED,op=probe}"] == 1
    assert got["coordinator_etcd_up"] == 1 and got["coordinator_etcd_revision"] == 77
    assert "process_resident_memory_bytes" in got
    assert not any(name.endswith("_created") for name in got), "no *_created series"


def test_a_failing_state_reader_does_not_fail_the_scrape(served: tuple[str, Metrics, Health, Clock]) -> None:
    """A state reader that raises drops the state gauges from that scrape; the counters are still served."""
    url, metrics, _, _ = served

    def broken() -> WatcherState:
        raise RuntimeError("dictionary changed size during iteration")

    metrics.bind_state(broken)
    status, body, _ = request(url + "/metrics")
    assert (
        status == 200 and "coordinator_leader" not in samples(body) and "coordinator_relists_total" not in body.decode()
    )
    assert "coordinator_watch_relists_total" in samples(body)


def test_unknown_paths_and_methods_are_refused(served: tuple[str, Metrics, Health, Clock]) -> None:
    """Other paths answer 404, other methods 405; HEAD answers the probe's status without a body."""
    url, _, _, _ = served
    assert request(url + "/")[0] == 404
    assert request(url + "/metrics", method="POST")[0] == 405
    status, body, _ = request(url + "/readyz", method="HEAD")
    assert (status, body) == (503, b"")


def test_two_metrics_objects_count_apart() -> None:
    """Each Metrics has a registry of its own: two in one process neither collide nor share counts."""
    first, second = Metrics(), Metrics()
    first.action_result("a", "create", "ok")
    assert first.triggers.labels("a", "create", "ok")._value.get() == 1
    assert second.triggers.labels("a", "create", "ok")._value.get() == 0


def test_a_taken_port_is_a_config_error() -> None:
    """Binding an address in use raises ConfigError naming the address and the setting."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127\.0\.0\.1:{port} \(--http / COORDINATOR_HTTP\)"):
            Listener(ListenAddress("127.0.0.1", port), lambda environ, start_response: [])


def test_watcher_state_counts_pending_and_failed_intents() -> None:
    """Pending intents are the ledger entries not done (pending or error); failed ones those in error; view_keys
    counts run states and ledger entries."""
    keys = KeyLayout("/c")
    graph = parse_spec(json.dumps({"b": "a"}))
    view = View(keys)
    rev = 0
    for dag, status in (("b", TriggerStatus.PENDING), ("c", TriggerStatus.ERROR), ("d", TriggerStatus.DONE)):
        rev += 1
        record = TriggerRecord(status=status, action=TriggerAction.CREATE, run_id=f"coordinator__{dag}")
        view.apply(keys.trigger_key(NodeId("default", dag), "2030-01-01T00:00:00Z"), dump_record(record), rev)
    view.apply(
        keys.run_key(NodeId("default", "a"), "2030-01-01T00:00:00Z"),
        b'{"state": "success", "run_id": "r", "clear_number": 0}',
        rev + 1,
    )
    view.revision = rev + 1
    assert view.problems == {}
    state = watcher_state(view, leading=False, in_flight=0, graph=graph, graph_invalid=True)
    assert (state.pending_intents, state.failed_intents, state.view_keys) == (2, 1, 4)
    assert (state.leader, state.watch_revision, state.graph_invalid, state.graph_dags) == (False, 4, True, 2)


def test_the_shipped_alert_rules_name_exported_metrics() -> None:
    """Every coordinator_* series the shipped alert rules (the chart's files/prometheus-rules.yaml) use is one the
    watcher or the OpenLineage receiver exports (a receiver's counters exist from its start)."""
    metrics = Metrics()
    Receiver(cast(Any, None), cast(Any, None), cast(Any, None), metrics)
    metrics.bind_state(lambda: STATE)
    metrics.airflow_request("default", "GET", "200", 0.01)
    metrics.airflow_auth_failure("default", "basic")
    metrics.airflow_reachable("default", True)
    metrics.action_result("default", "create", "ok")
    metrics.etcd_error("get", "UNAVAILABLE")
    metrics.etcd_probe(1)
    metrics.etcd_alarms(())
    metrics.instances_missing(("team_c",), ())
    metrics.airflow_refusing("default", 1_700_000_000.0, 5.0)
    metrics.reconcile_seconds.observe(0.01)
    exported = {s.name for family in metrics.registry.collect() for s in family.samples}
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    used = {name for rule in rules for name in re.findall(r"\bcoordinator_\w+", rule["expr"])}
    assert len(rules) >= 8 and used, rules
    assert used <= exported, f"not exported: {sorted(used - exported)}"


#: Handwritten pages that name series beside the generated table: what they name must exist, so they cannot drift.
SERIES_PAGES = ("reference/metrics.md", "reference/http.md", "howto/monitor.md", "howto/openlineage-receiver.md",
                "howto/etcd.md", "howto/assets.md", "howto/doctor.md", "howto/airflow-auth.md")  # fmt: skip
#: The sample names a family of each type exposes, after the family's own name.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "info": ("_info",)}


@pytest.mark.parametrize("page", SERIES_PAGES)
def test_every_series_a_handwritten_page_names_is_registered(page: str) -> None:
    """Every coordinator_* series a handwritten docs page names (outside the generated table) is registered."""
    metrics = Metrics()
    metrics.bind_state(lambda: STATE)
    names = set()
    for family in metrics.registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    text = (Path(__file__).resolve().parents[1] / "docs" / page).read_text(encoding="utf-8")
    # The generated table is committed in the page; it is the registry's own, checked by the reference pages' test.
    text = re.sub(r"<!-- generated: (\w+) -->.*?<!-- end generated: \1 -->", "", text, flags=re.DOTALL)
    # Whole words only: a family wildcard (`coordinator_lineage_*`) ends in `_` and is no name. Airflow connection
    # names, the delivery marker and the trigger probe's audit-log flag share the prefix and are not series.
    named = set(re.findall(r"\bcoordinator_[a-z_]*[a-z]\b", text))
    named -= {"coordinator_etcd", "coordinator_etcd_page", "coordinator_lineage", "coordinator_delivery"}
    named -= {"coordinator_probe"}
    assert named <= names, f"{page} names series the watcher does not register: {sorted(named - names)}"
