"""The Airflow client against the fake Airflow server over real sockets: the fake's semantics and fault injection."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.client import AirflowClient, TriggerResult
from coordinator.errors import AirflowAuthError, AirflowNotFound, AirflowUnavailable
from coordinator.runtime.retry import RetryPolicy, retry_call
from coordinator.runtime.settings import InstanceSettings
from tests.support.fake_airflow import DROPPED, FakeAirflow
from tests.support.peers import owner_pid

LD = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ID = "coordinator__2026-01-01T00:00:00Z"
ROOT = Path(__file__).resolve().parent.parent

Event = tuple[str, str, datetime | None, str, int]
#: The actuator's shape of retry (AirflowUnavailable only), with short delays for tests.
QUICK_RETRY = RetryPolicy(initial_s=0.01, max_s=0.1, max_attempts=5)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, AirflowUnavailable)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def fake(events: list[Event]) -> Iterator[FakeAirflow]:
    server = FakeAirflow(["a", "b"], password="pw", on_state=lambda *e: events.append(e), run_duration_s=0.02)
    with server:
        yield server
    assert server.callback_errors == []
    assert server.internal_errors == []


def call(fake: FakeAirflow, fn: Callable[[AirflowClient], Awaitable[Any]], timeout_s: float = 2.0) -> Any:
    """Run ``fn`` with a fresh client for the fake (each test step gets its own event loop)."""

    async def go() -> Any:
        settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, timeout_s=timeout_s) as client:
            return await fn(client)

    return asyncio.run(go())


def raw(fake: FakeAirflow, method: str, path: str, body: Any = None, token: bool = True) -> httpx.Response:
    """A plain HTTP call, to see the fake's answers the client would hide."""
    with httpx.Client(base_url=fake.url, timeout=2.0) as http:
        headers = {}
        if token:
            login = http.post("/auth/token", json={"username": "admin", "password": "pw"})
            headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        return http.request(method, path, json=body, headers=headers)


def test_trigger_creates_a_run_that_runs_and_reports_running_then_success(
    fake: FakeAirflow, events: list[Event]
) -> None:
    """A created run executes once; on_state sees running then success with clear_number 0."""
    outcome = call(fake, lambda c: c.trigger("a", RUN_ID, LD, {"x": 1}))
    assert outcome.result is TriggerResult.CREATED
    assert outcome.run.logical_date == LD and outcome.run.state == "queued"
    fake.wait_idle()
    assert events == [("a", RUN_ID, LD, "running", 0), ("a", RUN_ID, LD, "success", 0)]
    (execution,) = fake.executions("a")
    assert execution.outcome == "success" and execution.ended is not None and execution.attempt == 0
    final = call(fake, lambda c: c.get_run("a", RUN_ID))
    assert final.state == "success" and final.conf == {"x": 1}
    assert final.start_date is not None and final.end_date is not None
    assert fake.creates("a") == 1 and fake.calls("trigger", "a") == 1


def test_409_semantics_same_run_id_and_same_logical_date(fake: FakeAirflow) -> None:
    """A repeated run id is already_exists; another run id on a taken logical date finds the holder."""

    async def scenario(c: AirflowClient) -> list[Any]:
        first = await c.trigger("a", RUN_ID, LD, {})
        again = await c.trigger("a", RUN_ID, LD, {})
        other = await c.trigger("a", "manual_other", LD, {})
        elsewhere = await c.trigger("b", "manual_other", LD, {})  # uniqueness is per DAG
        return [first, again, other, elsewhere]

    first, again, other, elsewhere = call(fake, scenario)
    assert [o.result for o in (first, again, other, elsewhere)] == [
        TriggerResult.CREATED,
        TriggerResult.ALREADY_EXISTS,
        TriggerResult.LOGICAL_DATE_TAKEN,
        TriggerResult.CREATED,
    ]
    assert other.run.run_id == RUN_ID
    assert fake.creates("a") == 1 and fake.calls("trigger", "a") == 3
    conflict = raw(fake, "POST", "/api/v2/dags/a/dagRuns", {"dag_run_id": RUN_ID, "logical_date": None})
    assert conflict.status_code == 409
    assert conflict.json()["detail"]["reason"] == "Unique constraint violation"


def test_null_logical_dates_may_repeat(fake: FakeAirflow) -> None:
    """Only non-null logical dates are unique, as in Airflow 3."""
    for run_id in ("n1", "n2"):
        resp = raw(fake, "POST", "/api/v2/dags/a/dagRuns", {"dag_run_id": run_id, "logical_date": None})
        assert resp.status_code == 200
    assert fake.creates("a") == 2


def test_clear_without_dry_run_false_changes_nothing(fake: FakeAirflow) -> None:
    """A clear body without dry_run (or with dry_run true) is a dry run: same state, same clear_number."""
    call(fake, lambda c: c.trigger("a", RUN_ID, LD, {}))
    fake.wait_idle()
    for body in ({}, {"dry_run": True}):
        resp = raw(fake, "POST", f"/api/v2/dags/a/dagRuns/{RUN_ID}/clear", body)
        assert resp.status_code == 200 and "task_instances" in resp.json()
    run = fake.run("a", RUN_ID)
    assert run is not None and run.state == "success" and run.clear_number == 0
    assert fake.clears("a") == 0 and len(fake.executions("a")) == 1


def test_clear_reruns_with_clear_number_plus_one(fake: FakeAirflow, events: list[Event]) -> None:
    """clear() reruns the same run: clear_number 1, callback sees running then success again, attempts in order."""
    call(fake, lambda c: c.trigger("a", RUN_ID, LD, {"x": 1}))
    fake.wait_idle()
    first_queued = fake.run("a", RUN_ID).queued_at  # type: ignore[union-attr]
    cleared = call(fake, lambda c: c.clear("a", RUN_ID))
    assert cleared is not None and cleared.state == "queued" and cleared.queued_at != first_queued
    fake.wait_idle()
    assert events[2:] == [("a", RUN_ID, LD, "running", 1), ("a", RUN_ID, LD, "success", 1)]
    first, second = fake.executions("a")
    assert (first.attempt, second.attempt) == (0, 1)
    assert first.ended is not None and second.started >= first.ended
    run = fake.run("a", RUN_ID)
    assert run is not None and run.conf == {"x": 1} and run.logical_date == LD
    assert fake.clears("a") == 1 and fake.creates("a") == 1


def test_clear_while_running_interrupts_the_attempt(fake: FakeAirflow, events: list[Event]) -> None:
    """Clearing a running run ends that attempt as 'cleared' and only the new attempt reports success."""
    fake.set_duration("a", 0.5)
    fake.create_run("a", RUN_ID, LD)
    while not events:
        threading.Event().wait(0.01)
    fake.set_duration("a", 0.02)
    fake.clear_run("a", RUN_ID)
    fake.wait_idle()
    assert [e[3:] for e in events] == [("running", 0), ("running", 1), ("success", 1)]
    assert [e.outcome for e in fake.executions("a")] == ["cleared", "success"]


def test_paused_dag_keeps_runs_queued_until_unpaused(fake: FakeAirflow, events: list[Event]) -> None:
    """A run on a paused DAG stays queued; unpause() starts it."""
    fake.add_dag("p", paused=True)

    async def trigger_then_look(c: AirflowClient) -> Any:
        await c.trigger("p", RUN_ID, LD, {})
        return await c.get_dag("p")

    assert call(fake, trigger_then_look).is_paused is True
    fake.wait_idle()
    assert fake.run("p", RUN_ID).state == "queued"  # type: ignore[union-attr]
    assert events == []
    assert call(fake, lambda c: c.unpause("p")).is_paused is False
    fake.wait_idle()
    assert [e[3] for e in events] == ["running", "success"]


def test_the_dag_list_filters_on_paused_skips_missing_dags_and_pages(fake: FakeAirflow) -> None:
    """``GET /dags?paused=true`` lists exactly the paused DAGs (a missing one is not listed), over several pages."""
    for n in range(240):  # 120 paused: two pages of at most 100
        fake.add_dag(f"p{n:03d}", paused=n % 2 == 0)
    fake.set_missing("p000")
    assert call(fake, lambda c: c.paused_dags()) == {f"p{n:03d}" for n in range(2, 240, 2)}
    fake.set_paused("a", True)
    assert "a" in call(fake, lambda c: c.paused_dags())
    assert fake.calls("list_dags") == 4


def test_unknown_or_missing_dag_is_not_found(fake: FakeAirflow) -> None:
    """Unknown DAGs and DAGs set missing answer 404 on every endpoint."""
    with pytest.raises(AirflowNotFound):
        call(fake, lambda c: c.trigger("nope", RUN_ID, LD, {}))
    fake.set_missing("b")
    with pytest.raises(AirflowNotFound):
        call(fake, lambda c: c.get_dag("b"))
    assert call(fake, lambda c: c.get_run("b", RUN_ID)) is None


def test_failed_outcome_is_reported(fake: FakeAirflow, events: list[Event]) -> None:
    """A DAG configured to fail reports running then failed."""
    fake.set_outcome("b", "failed")
    call(fake, lambda c: c.trigger("b", RUN_ID, LD, {}))
    fake.wait_idle()
    assert [e[3] for e in events] == ["running", "failed"]
    assert fake.executions("b")[0].outcome == "failed"


def test_mark_success_reports_through_the_callback(fake: FakeAirflow, events: list[Event]) -> None:
    """A user marking a queued run success fires on_state like Airflow's api-server listener."""
    fake.add_dag("p", paused=True)
    fake.create_run("p", RUN_ID, LD)
    resp = raw(fake, "PATCH", f"/api/v2/dags/p/dagRuns/{RUN_ID}", {"state": "success"})
    assert resp.status_code == 200 and resp.json()["state"] == "success"
    fake.wait_idle()
    assert events == [("p", RUN_ID, LD, "success", 0)]


def test_fail_next_is_retried_by_the_retry_policy(fake: FakeAirflow) -> None:
    """Two injected 503s on trigger are retried; the run is created exactly once."""
    fake.fail_next(2, 503, endpoint="trigger", dag_id="a")

    async def scenario(c: AirflowClient) -> Any:
        return await retry_call(lambda: c.trigger("a", RUN_ID, LD, {}), QUICK_RETRY, is_unavailable)

    assert call(fake, scenario).result is TriggerResult.CREATED
    assert fake.calls("trigger", "a") == 3 and fake.creates("a") == 1


def test_lost_response_then_retry_is_already_exists(fake: FakeAirflow) -> None:
    """A trigger whose response is delayed past the client timeout is AirflowUnavailable; the retry finds the run."""
    fake.delay_next(1, 1.0, endpoint="trigger", after=True)
    with pytest.raises(AirflowUnavailable, match="timed out"):
        call(fake, lambda c: c.trigger("a", RUN_ID, LD, {}), timeout_s=0.3)
    outcome = call(fake, lambda c: c.trigger("a", RUN_ID, LD, {}))
    assert outcome.result is TriggerResult.ALREADY_EXISTS
    assert fake.creates("a") == 1


def test_delayed_request_and_its_retry_create_one_run(fake: FakeAirflow) -> None:
    """A trigger delayed before its effect times out at the client; with the retry, exactly one run exists."""
    fake.delay_next(1, 0.5, endpoint="trigger")

    async def scenario(c: AirflowClient) -> Any:
        return await retry_call(lambda: c.trigger("a", RUN_ID, LD, {}), QUICK_RETRY, is_unavailable)

    outcome = call(fake, scenario, timeout_s=0.2)
    assert outcome.result in (TriggerResult.CREATED, TriggerResult.ALREADY_EXISTS)
    fake.stop()  # joins the delayed request, which then met a 409
    assert fake.calls("trigger", "a") == 2 and fake.creates("a") == 1


@pytest.mark.parametrize("loss", ["fail", "drop"])
def test_faults_after_the_effect_apply_the_call_then_lose_the_answer(fake: FakeAirflow, loss: str) -> None:
    """fail_next/drop_next(after=True): the run is created and cleared, yet the client sees a transient failure."""
    if loss == "fail":
        fake.fail_next(1, 500, endpoint="trigger", after=True)
        fake.fail_next(1, 503, endpoint="clear", after=True)
    else:
        fake.drop_next(1, endpoint="trigger")
        fake.drop_next(1, endpoint="clear")
    expected = "-> 50" if loss == "fail" else "connection failed"
    with pytest.raises(AirflowUnavailable, match=expected):
        call(fake, lambda c: c.trigger("a", RUN_ID, LD, {}))
    assert fake.creates("a") == 1
    fake.wait_idle()
    with pytest.raises(AirflowUnavailable, match=expected):
        call(fake, lambda c: c.clear("a", RUN_ID))
    assert fake.clears("a") == 1
    statuses = [r.status for r in fake.requests() if r.changing]
    assert statuses == ([500, 503] if loss == "fail" else [DROPPED, DROPPED])


def test_drop_before_the_effect_changes_nothing(fake: FakeAirflow) -> None:
    """drop_next(after=False) closes the connection before the request has any effect."""
    fake.drop_next(1, endpoint="trigger", after=False)
    with pytest.raises(AirflowUnavailable, match="connection failed"):
        call(fake, lambda c: c.trigger("a", RUN_ID, LD, {}))
    assert fake.creates("a") == 0 and fake.runs("a") == []


def test_requests_are_logged_with_the_sender_the_identify_callback_names() -> None:
    """Each request is logged on arrival with its endpoint, DAG, status and the sending process (found by port)."""
    me = os.getpid()

    def identify(peer: tuple[str, int]) -> str | None:
        pid = owner_pid(peer[1], port, [me])
        return None if pid is None else f"pid-{pid}"

    with FakeAirflow(["a"], password="pw", identify=identify) as server:
        port = int(server.url.rsplit(":", 1)[1])
        call(server, lambda c: c.trigger("a", RUN_ID, LD, {}))
        call(server, lambda c: c.get_run("a", "missing"))
    logged = [(r.method, r.endpoint, r.dag_id, r.status, r.client) for r in server.requests()]
    assert logged == [
        ("GET", "version", "", 200, f"pid-{me}"),
        ("POST", "login", "", 201, f"pid-{me}"),
        ("POST", "trigger", "a", 200, f"pid-{me}"),
        ("GET", "version", "", 200, f"pid-{me}"),
        ("POST", "login", "", 201, f"pid-{me}"),
        ("GET", "get_run", "a", 404, f"pid-{me}"),
    ]
    assert [r.seq for r in server.requests()] == list(range(6))
    assert [r.changing for r in server.requests("trigger")] == [True]


def test_a_bug_in_the_fake_answers_500_and_is_recorded(fake: FakeAirflow, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside the fake's request handling is answered 500 and kept in internal_errors."""

    def broken(*args: object) -> tuple[int, Any]:
        raise KeyError("a bug")

    monkeypatch.setattr(fake, "_dispatch", broken)
    resp = raw(fake, "GET", "/api/v2/version", token=False)
    assert resp.status_code == 500
    assert len(fake.internal_errors) == 1 and "KeyError" in fake.internal_errors[0]
    fake.internal_errors.clear()  # seen: the fixture's own check must pass


def test_tokens_are_checked_and_expiry_causes_one_relogin(fake: FakeAirflow) -> None:
    """No token -> 401, unknown token -> 403, expired token -> 401 and the client logs in again by itself."""
    assert raw(fake, "GET", "/api/v2/dags/a", token=False).status_code == 401
    with httpx.Client(base_url=fake.url, timeout=2.0) as http:
        bad = http.get("/api/v2/dags/a", headers={"Authorization": "Bearer forged"})
        assert bad.status_code == 403
        assert http.get("/api/v2/version").status_code == 200
        assert http.get("/api/v1/version").status_code == 404
        assert http.post("/auth/token", json={"username": "admin", "password": "no"}).status_code == 401

    async def scenario(c: AirflowClient) -> Any:
        await c.get_dag("a")
        fake.expire_tokens()
        return await c.get_dag("a")

    logins = fake.calls("login")
    assert call(fake, scenario).dag_id == "a"
    assert fake.calls("login") - logins == 2


def test_client_without_credentials_is_refused_an_anonymous_token(fake: FakeAirflow) -> None:
    """Outside all-admins mode, GET /auth/token is 403 and the client reports an AirflowAuthError."""

    async def scenario() -> None:
        async with AirflowClient(InstanceSettings(url=fake.url), timeout_s=2.0) as client:
            await client.get_dag("a")

    with pytest.raises(AirflowAuthError) as err:
        asyncio.run(scenario())
    assert err.value.status == 403


def test_naive_dates_and_unknown_keys_are_422(fake: FakeAirflow) -> None:
    """The fake enforces Airflow 3's strict trigger body: aware logical_date (key required), no extra keys."""
    path = "/api/v2/dags/a/dagRuns"
    assert raw(fake, "POST", path, {"dag_run_id": "x", "logical_date": "2026-01-01T00:00:00"}).status_code == 422
    assert raw(fake, "POST", path, {"dag_run_id": "x"}).status_code == 422
    assert raw(fake, "POST", path, {"dag_run_id": "x", "logical_date": None, "execution_date": None}).status_code == 422
    assert fake.creates("a") == 0


def test_timetables_are_listed_filtered_and_refuse_keys_as_airflow_3_3_does(fake: FakeAirflow) -> None:
    """Rule 12: the DAG list shows each DAG's timetable fields and filters by timetable_type; a partition_key for a
    schedule=None DAG is Airflow's 400 and creates nothing, one for a PartitionedAtRuntime DAG is kept on its run."""
    fake.set_timetable("b", "None")
    listed = {d.dag_id: d.timetable for d in call(fake, lambda c: c.dag_list())}
    assert listed["a"] is not None and listed["a"].summary == "PartitionedAtRuntime" and not listed["a"].partitioned
    assert listed["b"] is not None and listed["b"].summary is None
    assert listed["b"].description == "Never, external triggers only"
    only = call(fake, lambda c: c.dag_list(timetable_types=["NullTimetable", "CronTriggerTimetable"]))
    assert [d.dag_id for d in only] == ["b"]
    body = {"dag_run_id": "x", "logical_date": None, "partition_key": "eu"}
    refused = raw(fake, "POST", "/api/v2/dags/b/dagRuns", body)
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Dag 'b' is not a partitioned Dag and does not accept a partition_key."
    assert fake.creates("b") == 0
    assert raw(fake, "POST", "/api/v2/dags/a/dagRuns", body).json()["partition_key"] == "eu"


def test_list_filters_and_ignored_unknown_parameters(fake: FakeAirflow) -> None:
    """logical_date filters select exactly; unknown query parameters are ignored like Airflow does."""
    for day in (1, 2, 3):
        fake.create_run("a", f"r{day}", datetime(2026, 1, day, tzinfo=UTC))
    day2 = "2026-01-02T00:00:00+00:00"
    only = raw(fake, "GET", f"/api/v2/dags/a/dagRuns?logical_date_gte={day2.replace('+', '%2B')}")
    assert [r["dag_run_id"] for r in only.json()["dag_runs"]] == ["r2", "r3"]
    ignored = raw(fake, "GET", "/api/v2/dags/a/dagRuns?execution_date_gte=2030-01-01T00:00:00Z")
    assert ignored.json()["total_entries"] == 3
    assert raw(fake, "GET", "/api/v2/dags/a/dagRuns?order_by=nonsense").status_code == 400
    found = call(fake, lambda c: c.find_run_by_logical_date("a", datetime(2026, 1, 2, tzinfo=UTC)))
    assert found is not None and found.run_id == "r2"
    since = datetime(2000, 1, 1, tzinfo=UTC)
    listed = call(fake, lambda c: c.list_runs("~", since))
    assert [r.run_id for r in listed] == ["r3", "r2", "r1"]


def test_stop_joins_every_thread() -> None:
    """After stop(), no thread of the fake is left, even with a request still delayed."""
    server = FakeAirflow(["a"]).start()
    server.delay_next(1, 30.0)
    with pytest.raises(AirflowUnavailable):
        call(server, lambda c: c.version(), timeout_s=0.2)
    server.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("fake-airflow") or "process_request" in t.name]


def test_standalone_prints_its_url_and_serves() -> None:
    """``python -m tests.support.fake_airflow`` prints a URL that answers, and exits cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_airflow", "--port", "0", "--dags", "a,b"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/api/v2/version", timeout=2.0).json()["version"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert '"a"' in out


def test_instance_check_requests_are_answered_but_logged_apart() -> None:
    """Rule 8: a request signed airflow-etcd-coordinator/check gets the normal answer, shows in checks() only, and
    does not consume an injected fault."""
    with FakeAirflow(["a"]) as fake:
        fake.fail_next(1, 503, endpoint="version")
        request = urllib.request.Request(
            f"{fake.url}/api/v2/version", headers={"User-Agent": "airflow-etcd-coordinator/check"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        assert [(r.endpoint, r.status) for r in fake.checks()] == [("version", 200)]
        assert fake.requests() == [] and fake.calls("version") == 0
        plain = urllib.request.Request(f"{fake.url}/api/v2/version")
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(plain, timeout=10)
        assert failed.value.code == 503  # the fault was still there for the watcher's own request
