"""Unit tests of coordinator.airflow.client through httpx.MockTransport (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow.client import (
    RUN_AFTER_MARGIN_S,
    AirflowClient,
    ApiVersion,
    DagRunInfo,
    TriggerResult,
    iso_utc,
    startable_run_after,
)
from coordinator.core.data_interval import DataInterval
from coordinator.errors import (
    AirflowAuthError,
    AirflowConflict,
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
)
from coordinator.runtime.retry import RetryPolicy, retry_call
from coordinator.runtime.settings import InstanceSettings

PASSWORD = "s3cret-Pa55word"
URL = "http://airflow.test"
LD = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ID = "coordinator__2026-01-01T00:00:00Z"

Handler = Callable[[httpx.Request], httpx.Response]


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def run_json(
    run_id: str = RUN_ID, logical_date: str | None = "2026-01-01T00:00:00Z", state: str = "queued"
) -> dict[str, Any]:
    return {
        "dag_run_id": run_id,
        "dag_id": "d",
        "logical_date": logical_date,
        "queued_at": "2026-01-02T03:04:05.123456Z",
        "start_date": None,
        "end_date": None,
        "state": state,
        "run_type": "manual",
        "conf": {"k": 1},
    }


class FakeApi:
    """A scripted Airflow: routes by (method, path) to handlers, records every request, issues numbered tokens."""

    def __init__(self, api: str = "v2") -> None:
        self.api = api
        self.requests: list[httpx.Request] = []
        self.logins = 0
        self.routes: dict[tuple[str, str], Handler] = {}
        self.valid_token = "tok-1"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def reply(self, method: str, path: str, *responses: httpx.Response) -> None:
        """Answer successive calls with ``responses`` (the last one repeats)."""
        queue = list(responses)

        def handler(_request: httpx.Request) -> httpx.Response:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.route(method, path, handler)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/api/v2/version":
            if self.api == "v2":
                return httpx.Response(200, json={"version": "3.3.2"})
            return httpx.Response(404, json={"detail": "Not Found"})
        if path == "/api/v1/version":
            return httpx.Response(200, json={"version": "2.11.2"})
        if path == "/auth/token":
            body = json.loads(request.content)
            if body != {"username": "admin", "password": PASSWORD}:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            self.logins += 1
            self.valid_token = f"tok-{self.logins}"
            return httpx.Response(201, json={"access_token": self.valid_token})
        handler = self.routes.get((request.method, path))
        if handler is None:
            return httpx.Response(404, json={"detail": f"no route {request.method} {path}"})
        return handler(request)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


def client(fake: FakeApi | Handler, *, api: str = "auto", timeout_s: float = 5.0) -> AirflowClient:
    settings = InstanceSettings(url=URL, username="admin", password=SecretStr(PASSWORD), api=api)
    return AirflowClient(settings, timeout_s=timeout_s, transport=httpx.MockTransport(fake), name="team_a")


async def using(fake: FakeApi | Handler, fn: Callable[[AirflowClient], Awaitable[Any]], **kw: Any) -> Any:
    async with client(fake, **kw) as c:
        return await fn(c)


RUNS = "/api/v2/dags/d/dagRuns"
RUN = f"/api/v2/dags/d/dagRuns/{RUN_ID}"


def test_v2_login_then_trigger_sends_bearer_token_and_aware_dates() -> None:
    """A v2 trigger logs in once, sends the JWT and an explicit +00:00 logical date, and parses the run."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(200, json=run_json()))
    outcome = run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {"k": 1})))
    assert outcome.result is TriggerResult.CREATED
    assert outcome.run.run_id == RUN_ID
    assert outcome.run.logical_date == LD
    assert outcome.run.queued_at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert outcome.run.conf == {"k": 1}
    (post,) = fake.calls("POST", RUNS)
    assert post.headers["Authorization"] == "Bearer tok-1"
    body = json.loads(post.content)
    assert body.pop("run_after")  # its value: test_v2_trigger_sends_run_after_in_the_past_in_whole_seconds
    assert body == {
        "dag_run_id": RUN_ID,
        "logical_date": "2026-01-01T00:00:00+00:00",
        "conf": {"k": 1},
    }
    assert fake.logins == 1


def test_run_id_is_percent_encoded_in_the_path() -> None:
    """Run ids with ':' and '+' reach the server as one path segment."""
    fake = FakeApi()
    fake.route("GET", RUN, lambda r: httpx.Response(200, json=run_json()))
    found = run(using(fake, lambda c: c.get_run("d", RUN_ID)))
    assert found is not None
    (req,) = fake.calls("GET", RUN)
    assert b"coordinator__2026-01-01T00%3A00%3A00Z" in req.url.raw_path


def test_relogin_on_401_token_expired_then_retry_once() -> None:
    """An expired token (401) triggers one fresh login and one retry of the same request."""
    fake = FakeApi()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {fake.valid_token}" or fake.logins < 2:
            return httpx.Response(401, json={"detail": "Token Expired"})
        return httpx.Response(200, json=run_json())

    fake.route("GET", RUN, handler)
    found = run(using(fake, lambda c: c.get_run("d", RUN_ID)))
    assert found is not None and found.run_id == RUN_ID
    assert fake.logins == 2
    assert [r.headers["Authorization"] for r in fake.calls("GET", RUN)] == ["Bearer tok-1", "Bearer tok-2"]


@pytest.mark.parametrize("second", [200, 403], ids=["then-ok", "then-403-again"])
def test_403_relogins_once_then_retries_or_raises_auth_error(second: int) -> None:
    """A 403 gets exactly one re-login and retry; a second 403 is an AirflowAuthError carrying 403."""
    fake = FakeApi()
    fake.reply(
        "GET",
        "/api/v2/dags/d",
        httpx.Response(403, json={"detail": "Forbidden"}),
        httpx.Response(second, json={"dag_id": "d", "is_paused": True, "detail": "Forbidden"}),
    )
    if second == 200:
        info = run(using(fake, lambda c: c.get_dag("d")))
        assert info.is_paused is True
    else:
        with pytest.raises(AirflowAuthError) as err:
            run(using(fake, lambda c: c.get_dag("d")))
        assert err.value.status == 403
        assert "GET /api/v2/dags/d -> 403" in str(err.value)
    assert fake.logins == 2
    assert len(fake.calls("GET", "/api/v2/dags/d")) == 2


def test_concurrent_401s_share_one_relogin() -> None:
    """Several requests that saw the same expired token cause a single login, not one each."""
    fake = FakeApi()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer tok-2":
            return httpx.Response(401, json={"detail": "Token Expired"})
        return httpx.Response(200, json=run_json())

    fake.route("GET", RUN, handler)

    async def first_login_then_burst(c: AirflowClient) -> list[DagRunInfo | None]:
        with pytest.raises(AirflowNotFound):
            await c.get_dag("nothing-here")  # the first login (tok-1), kept apart from the burst
        return await asyncio.gather(*(c.get_run("d", RUN_ID) for _ in range(5)))

    results = run(using(fake, first_login_then_burst))
    assert all(r is not None for r in results)
    assert fake.logins == 2


def test_409_for_our_run_id_is_already_exists() -> None:
    """A 409 whose run id reads back with the same logical date is ALREADY_EXISTS (a retried trigger)."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(409, json={"detail": {"reason": "Unique constraint violation"}}))
    fake.route("GET", RUN, lambda r: httpx.Response(200, json=run_json(state="running")))
    outcome = run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    assert outcome.result is TriggerResult.ALREADY_EXISTS
    assert outcome.run.state == "running"


def test_409_for_a_taken_logical_date_returns_the_holding_run() -> None:
    """A 409 with no such run id is resolved by finding the run that holds the logical date."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(409, json={"detail": {"reason": "Unique constraint violation"}}))
    other = run_json(run_id="scheduled__2026-01-01T00:00:00+00:00", state="success")
    fake.route("GET", RUNS, lambda r: httpx.Response(200, json={"dag_runs": [other], "total_entries": 1}))
    outcome = run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    assert outcome.result is TriggerResult.LOGICAL_DATE_TAKEN
    assert outcome.run.run_id == "scheduled__2026-01-01T00:00:00+00:00"
    (listing,) = fake.calls("GET", RUNS)
    assert listing.url.params["logical_date_gte"] == "2026-01-01T00:00:00+00:00"
    assert listing.url.params["logical_date_lte"] == "2026-01-01T00:00:00+00:00"


def test_409_nothing_explains_is_a_conflict() -> None:
    """A 409 when neither the run id nor the logical date is taken raises AirflowConflict."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(409, json={"detail": {"reason": "Unique constraint violation"}}))
    fake.route("GET", RUNS, lambda r: httpx.Response(200, json={"dag_runs": [], "total_entries": 0}))
    with pytest.raises(AirflowConflict) as err:
        run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    assert err.value.status == 409
    assert "Unique constraint violation" in str(err.value)


def test_409_with_our_run_id_on_another_date_is_a_conflict() -> None:
    """Our run id holding a different logical date is never taken for our run."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(409, json={"detail": "conflict"}))
    fake.route("GET", RUN, lambda r: httpx.Response(200, json=run_json(logical_date="2025-12-31T00:00:00Z")))
    with pytest.raises(AirflowConflict, match="exists with logical date"):
        run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))


def test_clear_sends_dry_run_false() -> None:
    """clear() posts dry_run false explicitly (Airflow defaults to a dry run) and returns the run."""
    fake = FakeApi()
    fake.route("POST", f"{RUN}/clear", lambda r: httpx.Response(200, json=run_json(state="queued")))
    cleared = run(using(fake, lambda c: c.clear("d", RUN_ID)))
    assert cleared is not None and cleared.state == "queued"
    (req,) = fake.calls("POST", f"{RUN}/clear")
    assert json.loads(req.content) == {"dry_run": False}


def test_5xx_is_unavailable_and_the_retry_policy_retries_it_until_success() -> None:
    """A 503 maps to AirflowUnavailable (status and request named), which the actuator's retry predicate retries."""
    fake = FakeApi()
    fake.reply(
        "GET",
        "/api/v2/dags/d",
        httpx.Response(503, text="upstream down"),
        httpx.Response(503),
        httpx.Response(200, json={"dag_id": "d", "is_paused": False}),
    )
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario(c: AirflowClient) -> Any:
        with pytest.raises(AirflowUnavailable) as err:
            await c.get_dag("d")
        assert err.value.status == 503
        assert "GET /api/v2/dags/d -> 503: upstream down" in str(err.value)
        policy = RetryPolicy(initial_s=0.5, max_s=8.0, max_attempts=5)
        return await retry_call(
            lambda: c.get_dag("d"), policy, lambda exc: isinstance(exc, AirflowUnavailable), sleep=fake_sleep
        )

    info = run(using(fake, scenario))
    assert info.is_paused is False
    assert sleeps == [0.5]  # one failure left for the retry loop


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("timed out"), httpx.ConnectTimeout("timed out"), httpx.ConnectError("refused")],
    ids=["read-timeout", "connect-timeout", "connect-error"],
)
def test_transport_failures_are_unavailable_with_status_0(exc: Exception) -> None:
    """Timeouts and connection errors become AirflowUnavailable with status 0."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/version":
            return httpx.Response(200, json={"version": "3.3.2"})
        raise exc

    with pytest.raises(AirflowUnavailable) as err:
        run(using(handler, lambda c: c.get_run("d", RUN_ID)))
    assert err.value.status == 0


def test_configured_timeout_applies_to_requests() -> None:
    """Every request carries the configured timeout, not httpx's 5 s default."""
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"version": "3.3.2"})

    run(using(handler, lambda c: c.version(), timeout_s=1.5))
    assert seen and all(t == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5} for t in seen)


def test_404_is_not_found_for_dags_and_none_for_runs() -> None:
    """A missing DAG raises AirflowNotFound; a missing run reads as None."""
    fake = FakeApi()
    with pytest.raises(AirflowNotFound) as err:
        run(using(fake, lambda c: c.get_dag("nope")))
    assert err.value.status == 404
    assert run(using(fake, lambda c: c.get_run("d", "nope"))) is None


def test_other_4xx_is_airflow_error_with_trimmed_detail_without_inputs() -> None:
    """A 422 becomes a plain AirflowError with location and message, no echoed input, at most ~300 chars."""
    fake = FakeApi()
    detail = [{"type": "extra_forbidden", "loc": ["body", "x" * 400], "msg": "Extra inputs", "input": "ECHOED"}]
    fake.route("POST", RUNS, lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(AirflowError) as err:
        run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    assert type(err.value) is AirflowError
    assert err.value.status == 422
    assert "ECHOED" not in str(err.value)
    assert len(str(err.value)) < 400


def test_failing_post_status_is_reported_not_the_get_before_it(caplog: pytest.LogCaptureFixture) -> None:
    """The error and the log carry the failing POST's status, not an earlier successful GET's (prior-art defect 10)."""
    fake = FakeApi()
    fake.route("GET", RUN, lambda r: httpx.Response(200, json=run_json()))
    fake.route("POST", f"{RUN}/clear", lambda r: httpx.Response(500, json={"detail": "boom"}))

    async def scenario(c: AirflowClient) -> None:
        await c.get_run("d", RUN_ID)
        await c.clear("d", RUN_ID)

    with (
        caplog.at_level(logging.WARNING, logger="coordinator.airflow.client"),
        pytest.raises(AirflowUnavailable) as err,
    ):
        run(using(fake, scenario))
    assert err.value.status == 500
    assert f"POST {RUN}/clear -> 500: boom" in str(err.value)
    failed = [r for r in caplog.records if "airflow.request_failed" in r.getMessage()]
    assert len(failed) == 1 and "status=500" in failed[0].getMessage()


def test_v1_fallback_uses_basic_auth_and_execution_date_filters() -> None:
    """Without /api/v2, the client uses /api/v1 with HTTP basic auth and v1 filter names."""
    fake = FakeApi(api="v1")
    v1_runs = "/api/v1/dags/d/dagRuns"
    v1_run = {**run_json(), "execution_date": "2026-01-01T00:00:00+00:00"}
    fake.route("GET", v1_runs, lambda r: httpx.Response(200, json={"dag_runs": [v1_run], "total_entries": 1}))
    fake.route("POST", f"/api/v1/dags/d/dagRuns/{RUN_ID}/clear", lambda r: httpx.Response(200, json=v1_run))

    async def scenario(c: AirflowClient) -> tuple[ApiVersion, DagRunInfo | None, DagRunInfo | None]:
        return await c.api_version(), await c.find_run_by_logical_date("d", LD), await c.clear("d", RUN_ID)

    api, found, cleared = run(using(fake, scenario))
    assert api is ApiVersion.V1
    assert found is not None and found.logical_date == LD
    assert cleared is not None
    (listing,) = fake.calls("GET", v1_runs)
    assert listing.url.params["execution_date_gte"] == "2026-01-01T00:00:00+00:00"
    expected = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    assert listing.headers["Authorization"] == expected
    assert fake.logins == 0
    (clear,) = fake.calls("POST", f"/api/v1/dags/d/dagRuns/{RUN_ID}/clear")
    assert json.loads(clear.content) == {"dry_run": False}


def test_v1_401_is_final_without_relogin() -> None:
    """Basic auth has nothing to refresh: a v1 401 is an AirflowAuthError after one request."""
    fake = FakeApi(api="v1")
    fake.route("GET", "/api/v1/dags/d", lambda r: httpx.Response(401, json={"detail": "Unauthorized"}))
    with pytest.raises(AirflowAuthError):
        run(using(fake, lambda c: c.get_dag("d")))
    assert len(fake.calls("GET", "/api/v1/dags/d")) == 1


def test_no_api_at_url_is_reported() -> None:
    """When neither /api/v2/version nor /api/v1/version answers, the error names both statuses."""
    with pytest.raises(AirflowError, match=r"/api/v2/version -> 404, GET /api/v1/version -> 404"):
        run(using(lambda r: httpx.Response(404, text="nginx"), lambda c: c.version()))


def test_password_and_token_never_appear_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Bodies echoing the password or the token are scrubbed; login errors carry no body."""
    errors: list[str] = []
    sent: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        """Echoes whatever secret it last saw: the login password and the bearer token."""
        if request.url.path == "/api/v2/version":
            return httpx.Response(200, json={"version": "3.3.2"})
        if request.url.path == "/auth/token":
            sent.append(json.loads(request.content)["password"])
            if sent[-1] == "other-Secret":
                return httpx.Response(200, json={"access_token": "tok-secret"})
            return httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "bad", "input": sent[-1]}]})
        auth = request.headers.get("Authorization", "")
        return httpx.Response(400, text=f"bad request from {auth} with {sent[-1]}")

    async def scenario(c: AirflowClient) -> None:
        with pytest.raises(AirflowError) as err:
            await c.get_dag("d")
        errors.append(str(err.value))

    with caplog.at_level(logging.DEBUG):
        run(using(echo, scenario))
        settings = InstanceSettings(url=URL, username="admin", password=SecretStr("other-Secret"))
        c2 = AirflowClient(settings, transport=httpx.MockTransport(echo))

        async def scenario2() -> None:
            async with c2:
                await scenario(c2)

        run(scenario2())
    assert len(errors) == 2
    for text in [*errors, caplog.text]:
        assert PASSWORD not in text
        assert "other-Secret" not in text
        assert "tok-secret" not in text
    assert "***" in errors[1]


def test_login_refused_is_auth_error_naming_the_user_only() -> None:
    """Bad credentials at /auth/token raise AirflowAuthError without the response body."""
    settings = InstanceSettings(url=URL, username="admin", password=SecretStr("not-it"))
    c = AirflowClient(settings, transport=httpx.MockTransport(FakeApi()))

    async def scenario() -> None:
        async with c:
            await c.get_dag("d")

    with pytest.raises(AirflowAuthError, match="login refused for user 'admin'") as err:
        run(scenario())
    assert err.value.status == 401


@pytest.mark.parametrize("allowed", [True, False], ids=["all-admins", "anonymous-off"])
def test_no_credentials_asks_for_an_anonymous_token(allowed: bool) -> None:
    """Without username/password the client asks GET /auth/token (Airflow's all-admins mode), else AuthError."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/version":
            return httpx.Response(200, json={"version": "3.3.2"})
        if request.url.path == "/auth/token":
            assert request.method == "GET"
            return httpx.Response(201, json={"access_token": "anon"}) if allowed else httpx.Response(403)
        assert request.headers["Authorization"] == "Bearer anon"
        return httpx.Response(200, json={"dag_id": "d", "is_paused": False})

    c = AirflowClient(InstanceSettings(url=URL), transport=httpx.MockTransport(handler))

    async def scenario() -> Any:
        async with c:
            return await c.get_dag("d")

    if allowed:
        assert run(scenario()).dag_id == "d"
    else:
        with pytest.raises(AirflowAuthError, match="anonymous tokens are off"):
            run(scenario())


def test_naive_datetime_is_refused_before_any_request() -> None:
    """Naive datetimes raise ValueError locally; Airflow 3 would answer 422."""
    fake = FakeApi()
    with pytest.raises(ValueError, match="naive"):
        run(using(fake, lambda c: c.trigger("d", RUN_ID, datetime(2026, 1, 1), {})))
    assert not fake.calls("POST", RUNS)
    assert iso_utc(datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))) == "2026-01-01T00:00:00+00:00"


def test_list_runs_pages_by_total_entries_and_drops_duplicates() -> None:
    """list_runs pages with offsets until total_entries, filters on updated_at, and dedupes shifted rows."""
    fake = FakeApi()
    rows = [run_json(run_id=f"r{i}") for i in range(150)]

    def handler(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        page = rows[offset : offset + limit]
        if offset:
            page = [rows[offset - 1], *page[:-1]]  # a new run shifted the second page by one
        return httpx.Response(200, json={"dag_runs": page, "total_entries": len(rows)})

    fake.route("GET", RUNS, handler)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    runs = run(using(fake, lambda c: c.list_runs("d", since, limit=1000)))
    assert len(runs) == 149 and len({r.run_id for r in runs}) == 149
    offsets = [r.url.params["offset"] for r in fake.calls("GET", RUNS)]
    assert offsets == ["0", "100"]
    assert fake.calls("GET", RUNS)[0].url.params["updated_at_gte"] == "2026-01-01T00:00:00+00:00"


def test_find_run_checks_logical_date_when_the_server_ignores_the_filter() -> None:
    """If the server ignores the filter and returns every run, only the exact logical date matches."""
    fake = FakeApi()
    rows = [run_json(run_id=f"r{i}", logical_date=f"2025-12-{i + 1:02d}T00:00:00Z") for i in range(30)]
    rows.append(run_json(run_id="hit"))
    fake.route("GET", RUNS, lambda r: httpx.Response(200, json={"dag_runs": rows, "total_entries": len(rows)}))
    found = run(using(fake, lambda c: c.find_run_by_logical_date("d", LD)))
    assert found is not None and found.run_id == "hit"
    missing = run(using(fake, lambda c: c.find_run_by_logical_date("d", datetime(2030, 1, 1, tzinfo=UTC))))
    assert missing is None


def test_unpause_patches_is_paused_false() -> None:
    """unpause() PATCHes is_paused false with an update mask and returns the new flag."""
    fake = FakeApi()
    fake.route("PATCH", "/api/v2/dags/d", lambda r: httpx.Response(200, json={"dag_id": "d", "is_paused": False}))
    info = run(using(fake, lambda c: c.unpause("d")))
    assert info.is_paused is False
    (req,) = fake.calls("PATCH", "/api/v2/dags/d")
    assert json.loads(req.content) == {"is_paused": False}
    assert req.url.params["update_mask"] == "is_paused"


def test_forced_api_version_skips_detection() -> None:
    """With api='v2' configured, no version probe is sent before the first call."""
    fake = FakeApi()
    fake.route("GET", "/api/v2/dags/d", lambda r: httpx.Response(200, json={"dag_id": "d", "is_paused": False}))
    run(using(fake, lambda c: c.get_dag("d"), api="v2"))
    assert not fake.calls("GET", "/api/v2/version")


def test_non_json_success_body_is_an_error() -> None:
    """An HTML 200 (a proxy's login page) is reported, not parsed into garbage."""
    fake = FakeApi()
    fake.route("GET", "/api/v2/dags/d", lambda r: httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(AirflowError, match="body is not JSON"):
        run(using(fake, lambda c: c.get_dag("d")))


def test_startable_run_after_is_a_whole_second_the_margin_behind() -> None:
    """run_after drops the fraction of a second and goes RUN_AFTER_MARGIN_S back, whatever the fraction."""
    for now in (datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 0, 0, 999999, tzinfo=UTC)):
        assert startable_run_after(now) == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC) - timedelta(
            seconds=RUN_AFTER_MARGIN_S
        )


def test_v2_trigger_sends_run_after_in_the_past_in_whole_seconds() -> None:
    """A v2 trigger sends run_after as a whole UTC second at least the margin behind the client's clock (so SQLite
    and MySQL, whose now() has whole seconds, let the scheduler start the run in its next loop)."""
    fake = FakeApi()
    fake.route("POST", RUNS, lambda r: httpx.Response(200, json=run_json()))
    before = datetime.now(UTC)
    run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    after = datetime.now(UTC)
    (post,) = fake.calls("POST", RUNS)
    sent = datetime.fromisoformat(json.loads(post.content)["run_after"])
    margin = timedelta(seconds=RUN_AFTER_MARGIN_S)
    assert sent.microsecond == 0 and sent.utcoffset() == timedelta(0)
    assert before.replace(microsecond=0) - margin <= sent <= after - margin


def test_v1_trigger_sends_no_run_after() -> None:
    """Airflow 2's v1 API has no run_after field: the trigger body carries only run id, logical date and conf."""
    fake = FakeApi(api="v1")
    v1_run = {**run_json(), "execution_date": "2026-01-01T00:00:00+00:00"}
    fake.route("POST", "/api/v1/dags/d/dagRuns", lambda r: httpx.Response(200, json=v1_run))
    run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {})))
    (post,) = fake.calls("POST", "/api/v1/dags/d/dagRuns")
    assert json.loads(post.content) == {"dag_run_id": RUN_ID, "logical_date": "2026-01-01T00:00:00+00:00", "conf": {}}


def test_v1_trigger_sends_the_data_interval_as_airflow_2_11_takes_it() -> None:
    """Airflow 2.11's v1 DAGRun body takes data_interval_start and data_interval_end (both or neither): a trigger with
    an interval sends both, as aware UTC times (semantics `triggered-data-interval`)."""
    fake = FakeApi(api="v1")
    v1_run = {**run_json(), "execution_date": "2026-01-01T00:00:00+00:00"}
    fake.route("POST", "/api/v1/dags/d/dagRuns", lambda r: httpx.Response(200, json=v1_run))
    run(using(fake, lambda c: c.trigger("d", RUN_ID, LD, {}, None, DataInterval(LD, LD + timedelta(days=1)))))
    (post,) = fake.calls("POST", "/api/v1/dags/d/dagRuns")
    assert json.loads(post.content) == {
        "dag_run_id": RUN_ID, "logical_date": "2026-01-01T00:00:00+00:00", "conf": {},
        "data_interval_start": "2026-01-01T00:00:00+00:00", "data_interval_end": "2026-01-02T00:00:00+00:00",
    }  # fmt: skip


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_list_task_instances_on_both_apis(api: str) -> None:
    """A task's instances across runs come from .../dagRuns/~/taskInstances filtered by updated_at on v1 and v2 and
    by task on v2 (Airflow 2 refuses unknown parameters); items of other tasks are dropped."""
    fake = FakeApi(api=api)
    path = f"/api/{api}/dags/d/dagRuns/~/taskInstances"
    date = {"execution_date": "2026-01-01T00:00:00+00:00"} if api == "v1" else {"logical_date": "2026-01-01T00:00:00Z"}
    mine = {
        "task_id": "publish", "dag_id": "d", "dag_run_id": RUN_ID, "map_index": -1, "try_number": 3,
        "state": "success", "start_date": "2026-01-02T00:00:01+00:00", "end_date": "2026-01-02T00:00:02+00:00", **date,
    }  # fmt: skip
    other = {**mine, "task_id": "other"}
    fake.route("GET", path, lambda r: httpx.Response(200, json={"task_instances": [mine, other], "total_entries": 2}))
    found = run(using(fake, lambda c: c.list_task_instances("d", "publish", LD)))
    assert [(t.task_id, t.run_id, t.state, t.try_number, t.map_index, t.logical_date) for t in found] == [
        ("publish", RUN_ID, "success", 3, -1, LD)
    ]
    (request,) = fake.calls("GET", path)
    assert request.url.params.get("task_id") == ("publish" if api == "v2" else None)
    assert request.url.params["updated_at_gte"] == "2026-01-01T00:00:00+00:00"


def test_task_instance_without_state_has_an_empty_state() -> None:
    """A cleared task instance not scheduled yet (state null) parses with state "" (never written by the audit)."""
    fake = FakeApi()
    path = "/api/v2/dags/d/dagRuns/~/taskInstances"
    item = {"task_id": "t", "dag_run_id": RUN_ID, "state": None, "logical_date": None}
    fake.route("GET", path, lambda r: httpx.Response(200, json={"task_instances": [item], "total_entries": 1}))
    (found,) = run(using(fake, lambda c: c.list_task_instances("d", "t", LD)))
    assert (found.state, found.try_number, found.logical_date) == ("", None, None)


@pytest.mark.parametrize("bound", [1, 3])
def test_calls_at_once_stay_within_the_bound_through_detection_and_login(bound: int) -> None:
    """Twelve reads started together on a fresh client (API version unknown, not logged in): at most ``bound``
    exchanges are in flight at once, the version detection and the login inside the first call take no slot of
    their own (no call waits for a slot its own caller holds), and every read is answered."""
    fake = FakeApi()
    fake.route("GET", "/api/v2/dags/d", lambda r: httpx.Response(200, json={"dag_id": "d", "is_paused": False}))
    in_flight, peak = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)  # answers overlap unless the client holds them back
            return fake(request)
        finally:
            in_flight -= 1

    async def burst() -> list[Any]:
        settings = InstanceSettings(url=URL, username="admin", password=SecretStr(PASSWORD), api="auto")
        async with AirflowClient(settings, transport=httpx.MockTransport(slow), max_calls=bound) as c:
            return await asyncio.wait_for(asyncio.gather(*(c.get_dag("d") for _ in range(12))), timeout=30)

    answers = run(burst())
    assert [a.is_paused for a in answers] == [False] * 12
    assert peak == bound
    assert len(fake.calls("GET", "/api/v2/dags/d")) == 12 and fake.logins == 1
