"""The google and aws_mwaa auth methods through the REAL google-auth and boto3, against local stand-ins.

google: a service-account file (key generated here) whose token endpoint is local and issues 3-second tokens; the
front accepts only those. aws_mwaa: boto3's create_web_login_token against a local MWAA API (AWS_ENDPOINT_URL_MWAA),
the web token exchanged at the front's /aws_mwaa/login for a session cookie that expires after 2 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coordinator.airflow import AirflowClient
from coordinator.airflow.gate import REFUSED_BACKOFF_S
from coordinator.errors import AirflowAuthError
from coordinator.runtime.instance_auth import GoogleAuth, MwaaAuth
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import InstanceSettings
from tests.support.auth_front import AuthFront, GoogleTokenEndpoint, MwaaApi, MwaaSessions, SignedTokens
from tests.support.cloud_auth import google_service_account, mwaa_environment
from tests.support.fake_airflow import FakeAirflow


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    with FakeAirflow(["d"]) as f:
        yield f


def failures(metrics: Metrics, method: str) -> float:
    labels = {"instance": "cloud", "method": method}
    return metrics.registry.get_sample_value("coordinator_airflow_auth_failures_total", labels) or 0.0


async def requests_until(client: AirflowClient, enough: Callable[[], bool], limit_s: float = 60.0) -> int:
    """get_dag every 0.1 s until ``enough()`` holds (at most ``limit_s``: a loaded machine is slow, not wrong); each
    must succeed."""
    loop = asyncio.get_running_loop()
    end, done = loop.time() + limit_s, 0
    while not enough() and loop.time() < end:
        assert (await client.get_dag("d")).dag_id == "d"
        done += 1
        await asyncio.sleep(0.1)
    return done


def test_google_tokens_from_the_real_library_are_renewed_across_expiries_then_revocation_and_recovery(
    fake: FakeAirflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """google-auth signs the assertion and fetches 3 s tokens; requests across 2+ expiries pass without a refusal;
    a revoked account is an AuthError naming the method and counted; restoring it recovers."""
    tokens = SignedTokens()
    metrics = Metrics()
    with GoogleTokenEndpoint(tokens, ttl_s=3) as endpoint:
        for key, value in google_service_account(tmp_path, endpoint.url + "/token").items():
            monkeypatch.setenv(key, value)
        with (
            caplog.at_level(logging.DEBUG),
            AuthFront(fake.url, tokens, username="admin", password="admin", upstream_api="v2") as front,
        ):

            async def scenario() -> None:
                settings = InstanceSettings(url=front.url, auth=GoogleAuth())
                hook = metrics.airflow_auth_failure
                gate_clock = [0.0]  # the instance's backoff clock (airflow/gate.py), moved by the test
                async with AirflowClient(settings, timeout_s=5.0, name="cloud", on_auth_failure=hook,
                                         clock=lambda: gate_clock[0]) as client:  # fmt: skip
                    await requests_until(client, lambda: endpoint.issued >= 3)
                    assert front.rejected == {}
                    assert endpoint.issued >= 3  # renewed before each of at least two expiries
                    endpoint.revoked = True
                    tokens.secret = "rotated"  # the cached token is refused too: a refresh is needed, and fails
                    with pytest.raises(AirflowAuthError, match=r"cloud: google auth: token refresh refused: .*"):
                        await client.get_dag("d")
                    assert failures(metrics, "google") >= 1  # 2 when an early renewal failed first
                    endpoint.revoked = False
                    gate_clock[0] += REFUSED_BACKOFF_S  # the refused instance's backoff step is over
                    assert (await client.get_dag("d")).dag_id == "d"

            asyncio.run(scenario())
    for token in tokens.accepted:
        assert token not in caplog.text


def test_mwaa_web_login_through_real_boto3_renews_expired_sessions_then_denial_and_recovery(
    fake: FakeAirflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """boto3 (AWS_ENDPOINT_URL_MWAA, no env. host prefix) gets web tokens, the login sets the session cookie, expired
    sessions (401) are renewed with one retry; a denied CreateWebLoginToken is an AuthError and counted; then works."""
    sessions = MwaaSessions(session_ttl_s=2.0)
    metrics = Metrics()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    with AuthFront(fake.url, sessions, username="admin", password="admin", upstream_api="v2") as front:
        host = front.url.removeprefix("http://")
        with MwaaApi(sessions, environment="prod-env", hostname=host) as api:
            for key, value in mwaa_environment(tmp_path, api.url).items():
                monkeypatch.setenv(key, value)

            async def scenario() -> None:
                settings = InstanceSettings(url=front.url, auth=MwaaAuth(environment="prod-env", region="eu-west-1"))
                hook = metrics.airflow_auth_failure
                gate_clock = [0.0]  # the instance's backoff clock (airflow/gate.py), moved by the test
                async with AirflowClient(settings, timeout_s=5.0, name="cloud", on_auth_failure=hook,
                                         clock=lambda: gate_clock[0]) as client:  # fmt: skip
                    with caplog.at_level(logging.DEBUG):
                        await requests_until(client, lambda: sessions.logins >= 3)
                    assert sessions.logins >= 3  # the session expired at least twice and was renewed
                    assert front.rejected[401] == sessions.logins - 1  # each expiry cost one refused request
                    api.denied = True
                    sessions.expire_all()
                    with pytest.raises(AirflowAuthError) as err:
                        await client.get_dag("d")
                    assert str(err.value).startswith(
                        "cloud: aws_mwaa auth: create_web_login_token for environment 'prod-env' in eu-west-1 "
                        "refused: AccessDeniedException: User is not authorized"
                    )
                    assert failures(metrics, "aws_mwaa") == 1
                    api.denied = False
                    gate_clock[0] += REFUSED_BACKOFF_S  # the refused instance's backoff step is over
                    assert (await client.get_dag("d")).dag_id == "d"

            asyncio.run(scenario())
    assert "session=" not in caplog.text


def test_mwaa_unknown_environment_names_it(fake: FakeAirflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong environment name: the AuthError carries AWS's ResourceNotFoundException and the name."""
    sessions = MwaaSessions()
    with (
        AuthFront(fake.url, sessions, username="admin", password="admin", upstream_api="v2") as front,
        MwaaApi(sessions, environment="prod-env", hostname="x") as api,
    ):
        for key, value in mwaa_environment(tmp_path, api.url).items():
            monkeypatch.setenv(key, value)

        async def scenario() -> None:
            settings = InstanceSettings(url=front.url, auth=MwaaAuth(environment="typo-env", region="us-east-1"))
            async with AirflowClient(settings, timeout_s=5.0, name="cloud") as client:
                await client.get_dag("d")

        with pytest.raises(AirflowAuthError, match=r"'typo-env' in us-east-1 refused: ResourceNotFoundException"):
            asyncio.run(scenario())
