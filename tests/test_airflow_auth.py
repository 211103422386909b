"""Per-instance auth (coordinator.airflow.auth*) against the fake Airflow behind a front that enforces each method.

Real sockets at the HTTP boundary: the client talks to :class:`tests.support.auth_front.AuthFront`, which checks the
credential the way the managed service does and forwards to :class:`tests.support.fake_airflow.FakeAirflow`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from coordinator.airflow import AirflowClient, ApiVersion
from coordinator.airflow.gate import REFUSED_BACKOFF_S
from coordinator.errors import AirflowAuthError, AirflowBackingOff
from coordinator.runtime.instance_auth import AuthConfig, BearerAuth, ExecAuth, NoAuth
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import InstanceSettings
from tests.support.auth_front import AuthFront, Policy, SignedTokens, StaticTokens
from tests.support.fake_airflow import FakeAirflow

MINT = str(Path(__file__).resolve().parent / "support" / "mint_token.py")


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    with FakeAirflow(["d"]) as f:
        yield f


def front(fake: FakeAirflow, policy: Policy) -> AuthFront:
    return AuthFront(fake.url, policy, username="admin", password="admin", upstream_api="v2")


def auth_failures(metrics: Metrics, instance: str, method: str) -> float:
    value = metrics.registry.get_sample_value(
        "coordinator_airflow_auth_failures_total", {"instance": instance, "method": method}
    )
    return value or 0.0


def run_client(
    url: str,
    auth: AuthConfig,
    fn: Callable[[AirflowClient], Awaitable[Any]],
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    async def main() -> Any:
        settings = InstanceSettings(url=url, auth=auth)
        hook = metrics.airflow_auth_failure if metrics is not None else None
        async with AirflowClient(settings, timeout_s=5.0, name="team_a", on_auth_failure=hook, clock=clock) as client:
            return await fn(client)

    return asyncio.run(main())


def exec_auth(secret_file: Path, ttl_s: float, *extra: str) -> ExecAuth:
    return ExecAuth(command=(sys.executable, MINT, str(secret_file), str(ttl_s), *extra))


def test_bearer_file_rotation_rereads_the_file_once_after_a_401(fake: FakeAirflow, tmp_path: Path) -> None:
    """A rotated token (old one 401) is picked up from the re-read file with one retry, no restart."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    tokens = StaticTokens("old-token")

    async def scenario(client: AirflowClient) -> None:
        assert (await client.get_dag("d")).dag_id == "d"
        token_file.write_text("new-token\n")
        tokens.rotate("new-token")
        assert (await client.get_dag("d")).dag_id == "d"
        assert client.auth.obtained == 2

    with front(fake, tokens) as f:
        run_client(f.url, BearerAuth(token_file=token_file), scenario)
        assert f.rejected == {401: 1}
    assert tokens.accepted["new-token"] >= 1


def test_concurrent_401s_cause_exactly_one_refresh(fake: FakeAirflow, tmp_path: Path) -> None:
    """Twenty requests that all meet the rotated-out token share ONE re-read of the file and all succeed."""
    token_file = tmp_path / "token"
    token_file.write_text("old-token")
    tokens = StaticTokens("old-token")

    async def scenario(client: AirflowClient) -> int:
        await client.get_dag("d")
        token_file.write_text("new-token")
        tokens.rotate("new-token")
        results = await asyncio.gather(*(client.get_dag("d") for _ in range(20)))
        assert all(r.dag_id == "d" for r in results)
        return client.auth.obtained

    with front(fake, tokens) as f:
        obtained = run_client(f.url, BearerAuth(token_file=token_file), scenario)
        assert f.rejected[401] >= 2  # several requests really did meet the old token at once
    assert obtained == 2  # the first read, and one refresh for all of them


def test_bearer_from_env_cannot_refresh_so_a_401_is_final_and_counted(fake: FakeAirflow) -> None:
    """A token from the environment is fixed for the process: a 401 is an AuthError at once, counted once."""
    metrics = Metrics()
    tokens = StaticTokens("good")
    tokens.rotate("other")

    async def scenario(client: AirflowClient) -> None:
        with pytest.raises(AirflowAuthError, match=r"team_a: GET /api/v2/version -> 401: Token revoked"):
            await client.get_dag("d")

    with front(fake, tokens) as f:
        auth = BearerAuth(token=SecretStr("good"), token_env="T")
        run_client(f.url, auth, scenario, metrics)
        assert f.rejected == {401: 1}  # no retry: nothing could change
    assert auth_failures(metrics, "team_a", "bearer") == 1


def test_exec_tokens_that_expire_every_two_seconds_are_renewed_before_expiry(fake: FakeAirflow, tmp_path: Path) -> None:
    """Requests over 5 s with 2 s tokens: the command runs again before each expiry and no request is refused."""
    tokens = SignedTokens()
    secret = tmp_path / "secret"
    secret.write_text(tokens.secret)
    count = tmp_path / "count"

    async def scenario(client: AirflowClient) -> int:
        loop = asyncio.get_running_loop()
        end = loop.time() + 5.0
        done = 0
        while loop.time() < end:
            assert (await client.get_dag("d")).dag_id == "d"
            done += 1
            await asyncio.sleep(0.1)
        return done

    with front(fake, tokens) as f:
        done = run_client(f.url, exec_auth(secret, 2, "--count-file", str(count)), scenario)
        assert f.rejected == {}
    runs = len(count.read_text().splitlines())
    assert runs >= 3  # at least two expiries passed, each renewed by running the command again
    assert len(tokens.accepted) == runs
    assert done >= runs


def test_exec_token_rejected_after_a_key_rotation_runs_the_command_again(fake: FakeAirflow, tmp_path: Path) -> None:
    """A cached exec token the server stops accepting (403) is replaced by one fresh command run and one retry."""
    tokens = SignedTokens()
    secret = tmp_path / "secret"
    secret.write_text(tokens.secret)

    async def scenario(client: AirflowClient) -> None:
        await client.get_dag("d")
        tokens.secret = "rotated-signing-key"
        secret.write_text(tokens.secret)
        await client.get_dag("d")
        assert client.auth.obtained == 2

    with front(fake, tokens) as f:
        run_client(f.url, exec_auth(secret, 600), scenario)
        assert f.rejected == {403: 1}


def test_revoked_exec_credential_is_a_clear_error_and_metric_then_recovers(
    fake: FakeAirflow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing token command: AuthError naming instance, method, command and its stderr; counted; the calls after it
    are held back without running it again until the instance's backoff step ends; fixed, the next try works."""
    metrics = Metrics()
    now = [1000.0]
    tokens = SignedTokens()
    secret = tmp_path / "secret"
    secret.write_text(tokens.secret)
    deny = tmp_path / "deny"
    seen: list[str] = []

    async def scenario(client: AirflowClient) -> None:
        await client.get_dag("d")
        tokens.secret = "rotated"  # the cached token is now refused ...
        deny.touch()  # ... and the command fails, as for a disabled account
        with pytest.raises(AirflowAuthError) as err:
            await client.get_dag("d")
        seen.append(str(err.value))
        with pytest.raises(AirflowBackingOff, match="not sent: the instance has refused us since"):
            await client.get_dag("d")  # held back: the command is not run again within the step
        deny.unlink()
        secret.write_text(tokens.secret)
        now[0] += REFUSED_BACKOFF_S  # the step is over: the next call is the probe, and it runs the command again
        assert (await client.get_dag("d")).dag_id == "d"

    with caplog.at_level(logging.DEBUG), front(fake, tokens) as f:
        run_client(f.url, exec_auth(secret, 600, "--deny-file", str(deny)), scenario, metrics, clock=lambda: now[0])
    (message,) = seen
    assert message.startswith("team_a: exec auth: ")
    assert "exited with status 1: error: access denied: the service account was disabled" in message
    assert auth_failures(metrics, "team_a", "exec") == 1
    for token in tokens.accepted:
        assert token not in caplog.text


def test_none_sends_no_credentials(fake: FakeAirflow) -> None:
    """Method none sends no Authorization header; a front that wants one answers 401, which is final."""
    tokens = StaticTokens("t")

    async def scenario(client: AirflowClient) -> None:
        with pytest.raises(AirflowAuthError, match="Not authenticated"):
            await client.get_dag("d")

    with front(fake, tokens) as f:
        run_client(f.url, NoAuth(), scenario)
        assert f.rejected == {401: 1}


def test_version_detection_sends_the_credentials(fake: FakeAirflow, tmp_path: Path) -> None:
    """Behind a front that guards /api/v2/version, auto-detection succeeds with the credential and says v2."""
    token_file = tmp_path / "token"
    token_file.write_text("t")

    async def scenario(client: AirflowClient) -> tuple[ApiVersion, str]:
        return await client.api_version(), await client.version()

    with front(fake, StaticTokens("t")) as f:
        assert run_client(f.url, BearerAuth(token_file=token_file), scenario) == (ApiVersion.V2, "3.3.2")
        assert f.rejected == {}


def test_version_detection_with_a_refused_credential_is_an_auth_error_not_a_guess(
    fake: FakeAirflow, tmp_path: Path
) -> None:
    """A 403 at /api/v2/version after the one refresh is an AuthError naming it (not a silent fall back to v1)."""
    metrics = Metrics()
    token_file = tmp_path / "token"
    token_file.write_text("wrong")

    async def scenario(client: AirflowClient) -> None:
        with pytest.raises(AirflowAuthError, match=r"team_a: GET /api/v2/version -> 403: Invalid token"):
            await client.api_version()
        assert client.auth.obtained == 2  # one refresh (the file re-read) before giving up

    with front(fake, StaticTokens("right")) as f:
        run_client(f.url, BearerAuth(token_file=token_file), scenario, metrics)
        assert f.rejected == {403: 2}
    assert auth_failures(metrics, "team_a", "bearer") == 1


def test_unreadable_token_file_at_refresh_is_an_error_naming_the_file(fake: FakeAirflow, tmp_path: Path) -> None:
    """A token file removed after start: the refresh fails with the path and the reason, counted once."""
    metrics = Metrics()
    token_file = tmp_path / "token"
    token_file.write_text("old")
    tokens = StaticTokens("old")

    async def scenario(client: AirflowClient) -> None:
        await client.get_dag("d")
        tokens.rotate("new")
        token_file.unlink()
        with pytest.raises(AirflowAuthError, match=rf"team_a: bearer auth: cannot read token file {token_file}"):
            await client.get_dag("d")

    with front(fake, tokens) as f:
        run_client(f.url, BearerAuth(token_file=token_file), scenario, metrics)
    assert auth_failures(metrics, "team_a", "bearer") == 1


def _jwt(exp: float) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512'})}.{part({'sub': 'admin', 'exp': exp})}.c2ln"


def test_password_jwt_is_renewed_before_its_exp_without_a_401() -> None:
    """Airflow 3's JWT carries exp: a request after (exp - margin) logs in again first, never meeting a 401."""
    logins: list[str] = []
    refused: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/version":
            return httpx.Response(200, json={"version": "3.3.2"})
        if request.url.path == "/auth/token":
            logins.append(_jwt(time.time() + 2.0))
            return httpx.Response(201, json={"access_token": logins[-1]})
        if request.headers.get("Authorization") != f"Bearer {logins[-1]}":
            refused.append(request)
            return httpx.Response(401, json={"detail": "Token Expired"})
        return httpx.Response(200, json={"dag_id": "d", "is_paused": False})

    async def main() -> None:
        settings = InstanceSettings(url="http://airflow.test", username="admin", password=SecretStr("pw"))
        async with AirflowClient(settings, transport=httpx.MockTransport(handler), name="a") as client:
            await client.get_dag("d")
            await asyncio.sleep(1.7)  # past exp - margin (a quarter of the 2 s lifetime), before exp
            await client.get_dag("d")

    asyncio.run(main())
    assert len(logins) == 2
    assert refused == []


def test_exec_command_that_hangs_is_killed_after_its_timeout(tmp_path: Path) -> None:
    """A token command that never finishes is killed after timeout_s and reported; nothing waits forever."""
    auth = ExecAuth(command=(sys.executable, "-c", "import time; time.sleep(60)"), timeout_s=0.5)

    async def scenario(client: AirflowClient) -> None:
        with pytest.raises(AirflowAuthError, match=r"team_a: exec auth: .* did not finish within 0.5 s \(killed\)"):
            await client.get_dag("d")

    run_client("http://127.0.0.1:9", auth, scenario)
