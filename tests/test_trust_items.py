"""The smaller trust items of issue 26, each shown on its own: whole names only, secrets out of URLs and of an exec
command's stderr, etcd endpoints that would leak credentials, and the page's bounded duration walk."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow.auth_methods import ExecMethod
from coordinator.core.model import NAME_RE, KeyLayout, NodeId
from coordinator.errors import AirflowAuthError, ConfigError, SpecError, StoreUnavailable
from coordinator.etcd import KV, EtcdStore
from coordinator.informer.presence_value import InstanceCheck
from coordinator.page import service
from coordinator.runtime.redact import redact_text, redact_url
from coordinator.runtime.settings import EtcdSettings, parse_endpoints, plaintext_credentials
from coordinator.runtime.spec_file import parse_spec
from tests.test_plugin_writer import closed_port


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("01_pipeline", True, id="plain"),
        pytest.param("group.task", True, id="dotted"),
        pytest.param("...", True, id="three-dots-is-a-name"),
        pytest.param("load\n", False, id="trailing-newline"),
        pytest.param(".", False, id="dot"),
        pytest.param("..", False, id="dot-dot"),
        pytest.param("a/b", False, id="slash"),
    ],
)
def test_names_are_whole_and_never_dot_segments(name: str, ok: bool) -> None:
    """NAME_RE accepts a whole name only: no trailing newline (``\\Z``, not ``$``), never ``.`` or ``..``."""
    assert bool(NAME_RE.match(name)) is ok


def test_a_dot_dot_dag_or_instance_is_refused_where_it_enters() -> None:
    """NodeId.parse and dependencies.json refuse ``..`` (httpx would resolve it out of a REST path)."""
    with pytest.raises(ValueError):
        NodeId.parse("team_a/..")
    with pytest.raises(ValueError):
        NodeId.parse("../load")
    with pytest.raises(SpecError):
        parse_spec('{"b": ".."}', "dependencies.json")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://user:s3cret@airflow:8080/x", "https://***@airflow:8080/x", id="user-and-password"),
        pytest.param("http://token@airflow", "http://***@airflow", id="user-only"),
        pytest.param("https://airflow.example.com", "https://airflow.example.com", id="no-userinfo"),
    ],
)
def test_urls_lose_their_user_information(url: str, shown: str) -> None:
    """redact_url masks user:pass@; the presence record (logged, written to etcd) never holds it."""
    assert redact_url(url) == shown
    check = InstanceCheck(instance="team_a", url=url)
    assert check.url == shown and "s3cret" not in check.model_dump_json()


def test_redact_text_masks_what_looks_like_a_credential() -> None:
    """Secret pairs, Bearer credentials, JWTs, URL user information and long opaque tokens are masked."""
    text = ("error: password=hunter2 token: abc Authorization: Bearer xyz.123 "
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig https://u:p@idp/x " + "A" * 40 + " exit 1")  # fmt: skip
    out = redact_text(text)
    for secret in ("hunter2", "xyz.123", "eyJhbGci", "u:p@", "A" * 40):
        assert secret not in out, out
    assert out.startswith("error: password=***") and out.endswith("exit 1")


def test_exec_auth_stderr_is_redacted(tmp_path: Any) -> None:
    """A failing exec auth command that echoes its secret on stderr: the error keeps the status, not the secret."""
    script = "import sys; print('login failed for client_secret=TOPSECRET42 (Bearer abc.def)', file=sys.stderr); " \
             "sys.exit(3)"  # fmt: skip
    method = ExecMethod("team_a", (sys.executable, "-c", script), 10.0)
    with pytest.raises(AirflowAuthError) as raised:
        asyncio.run(method.obtain(None, None))  # type: ignore[arg-type]
    message = str(raised.value)
    assert "status 3" in message and "login failed" in message, message
    assert "TOPSECRET42" not in message and "abc.def" not in message, message


def test_mixed_http_and_https_etcd_endpoints_are_refused() -> None:
    """A client that falls over to the http member would send credentials in clear: the setting is refused,
    naming the plain endpoint."""
    with pytest.raises(ConfigError, match=r"mix https:// and http:// \(b:2379 without TLS\)"):
        parse_endpoints("https://a:2379,http://b:2379")
    assert [e.tls for e in parse_endpoints("https://a:2379,https://b:2379")] == [True, True]


def test_credentials_over_plain_http_to_a_remote_host_are_warned(caplog: pytest.LogCaptureFixture) -> None:
    """A username over http:// to a non-loopback host logs `etcd.plaintext_credentials` (never the password);
    loopback and TLS do not."""
    remote = EtcdSettings(endpoints=parse_endpoints(f"http://0.0.0.0:{closed_port()}"), username="u",
                          password=SecretStr("pw-not-logged"), timeout_s=1.0)  # fmt: skip
    assert plaintext_credentials(remote)
    assert not plaintext_credentials(remote.model_copy(update={"endpoints": parse_endpoints("http://127.0.0.1:1")}))
    assert not plaintext_credentials(remote.model_copy(update={"endpoints": parse_endpoints("https://etcd:2379")}))
    assert not plaintext_credentials(remote.model_copy(update={"username": None}))
    with caplog.at_level(logging.WARNING, logger="coordinator.etcd"), pytest.raises(StoreUnavailable):
        asyncio.run(EtcdStore.connect(remote, quick=True))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("etcd.plaintext_credentials")]
    assert len(lines) == 1 and "user=u " in lines[0] and "pw-not-logged" not in caplog.text


def test_the_pages_duration_walk_stops_after_a_bounded_number_of_pages() -> None:
    """A DAG whose history holds no dated success is read at most LEARN_MAX_PAGES pages back, not to its first
    partition."""
    keys = KeyLayout("/c")
    graph = parse_spec(
        '{"version": 1, "dags": {"a": {}, "b": {"upstreams": ["a"], "expected_by": {"after_end": "1h"}}}}', "deps"
    )
    calls: list[str | None] = []

    class Endless:
        """Every page full of failures, forever."""

        async def newest(self, prefix: str, limit: int, *, revision: int, below: str | None = None) -> list[KV]:
            calls.append(below)
            n = len(calls)
            return [KV(f"{prefix}{n:06d}-{i:03d}", b'{"state":"failed","run_id":"r"}', 1, 1, 1) for i in range(limit)]

    found = asyncio.run(service._learning_history(Endless(), keys, graph, 1))  # type: ignore[arg-type]
    walked = len(service.learning_dags(graph))
    assert walked >= 1
    assert len(calls) == service.LEARN_MAX_PAGES * walked
    assert len(found) == service.LEARN_MAX_PAGES * service.LEARN_PAGE * walked
