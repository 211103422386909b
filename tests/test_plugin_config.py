"""The plugin's settings the Airflow way: ``COORDINATOR_*`` > ``[coordinator]`` > the etcd connection > defaults.

Airflow's real configuration object and its real connection lookup (a LocalFilesystemBackend secrets backend,
``AIRFLOW_CONN_*``) run in a child process (``tests/support/plugin_settings_probe.py``), so Airflow is never imported
into the test process; the bounded lookup (a slow or failing secrets backend) is tested in-process with an injected
lookup and a real etcd.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.airflow_plugin.check import FakeDagRun
from coordinator.airflow_plugin.config import (
    ConnectionFields,
    ConnectionResolver,
    Source,
    local_config,
    resolve_now,
)
from coordinator.airflow_plugin.hooks import record_dag_run
from coordinator.airflow_plugin.writer import BackgroundWriter, install_writer
from coordinator.core.model import NodeId, RunState, parse_run_record
from coordinator.errors import StoreUnavailable
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer
from tests.support.certs import make_certs
from tests.support.plugin_settings_probe import RESULT

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer setting leaks into the in-process tests."""
    for name in list(os.environ):
        if name.startswith(("COORDINATOR_", "AIRFLOW")):
            monkeypatch.delenv(name)


def child_env(tmp_path: Path, cfg: str = "") -> dict[str, str]:
    """A clean environment for an Airflow child: its own home and airflow.cfg, nothing of the developer's."""
    home = tmp_path / "airflow-home"
    home.mkdir(exist_ok=True)
    config = home / "airflow.cfg"
    config.write_text(cfg, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COORDINATOR_", "AIRFLOW"))}
    # TMPDIR: the plugin caches its task names there (``coordinator-tasks-*.json``); kept out of the host's /tmp.
    env.update(
        AIRFLOW_HOME=str(home), AIRFLOW_CONFIG=str(config), AIRFLOW__CORE__LOAD_EXAMPLES="False", TMPDIR=str(tmp_path)
    )
    return env


def probe(tmp_path: Path, scenarios: list[dict[str, Any]], cfg: str = "") -> list[dict[str, Any]]:
    """Run the scenarios in one Airflow child process (``plugin_settings_probe``) and return its results."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.plugin_settings_probe"],
        input=json.dumps(scenarios),
        env={**child_env(tmp_path, cfg), "PYTHONPATH": str(REPO)},
        cwd=tmp_path,  # not the repository root: a stray *.egg-info there makes Airflow see the plugin twice
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]  # Airflow logs to stdout too
    results: list[dict[str, Any]] = json.loads(line.removeprefix(RESULT))
    return results


def conn(host: str, port: int | None = None, **fields: Any) -> dict[str, Any]:
    return {"conn_type": "generic", "host": host, **({"port": port} if port else {}), **fields}


# ----- precedence, with Airflow's real conf and connection lookup (one child process for the whole table) -----

ALL_THREE = {
    "COORDINATOR_ETCD_ENDPOINTS": "http://env-host:1",
    "COORDINATOR_ETCD_USERNAME": "env-user",
    "COORDINATOR_ETCD_PASSWORD": "env-pw",
}
SECTION = {
    "AIRFLOW__COORDINATOR__ETCD_ENDPOINTS": "http://section-host:2",
    "AIRFLOW__COORDINATOR__ETCD_USERNAME": "section-user",
    "AIRFLOW__COORDINATOR__ETCD_PASSWORD": "section-pw",
}
CONNECTION = {"coordinator_etcd": conn("conn-host", 3, login="conn-user", password="conn-pw")}
CFG = "[coordinator]\nprefix = /from-cfg\ninstance = cfg_instance\n"

SCENARIOS: dict[str, dict[str, Any]] = {
    "env_beats_section_and_connection": {"env": {**ALL_THREE, **SECTION}, "connections": CONNECTION},
    "section_beats_connection": {"env": SECTION, "connections": CONNECTION},
    "connection_beats_defaults": {"env": {}, "connections": CONNECTION},
    "defaults_without_connection": {"env": {}, "connections": None},
    "each_setting_its_own_source": {
        "env": {
            "COORDINATOR_ETCD_ENDPOINTS": "http://env-host:1",
            "AIRFLOW__COORDINATOR__ETCD_USERNAME": "section-user",
            "AIRFLOW__COORDINATOR__INSTANCE": "section_instance",  # over airflow.cfg's: Airflow's own order
        },
        "connections": CONNECTION,
    },
    "airflow_conn_env_variable": {
        "env": {"AIRFLOW_CONN_COORDINATOR_ETCD": json.dumps(conn("env-conn-host", 4))},
        "connections": None,
    },
    "secrets_backend_before_airflow_conn": {
        "env": {"AIRFLOW_CONN_COORDINATOR_ETCD": json.dumps(conn("env-conn-host", 4))},
        "connections": CONNECTION,
    },
    "extra_endpoints_and_pem": {
        "env": {"AIRFLOW__COORDINATOR__ETCD_CONN_ID": "my_etcd"},
        "connections": {
            "my_etcd": conn(
                "ignored-host",
                9,
                extra={
                    "endpoints": ["https://a:2379", "https://b:2379"],
                    "ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                    "cert": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
                    "key": "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEY\n-----END PRIVATE KEY-----\n",
                },
            )
        },
    },
    "named_connection_missing": {"env": {"AIRFLOW__COORDINATOR__ETCD_CONN_ID": "nowhere"}, "connections": {}},
    "pem_that_is_not_pem": {
        "env": {},
        "connections": {"coordinator_etcd": conn("h", 1, extra={"key": "hunter2-not-a-key"})},
    },
    "bad_section_value": {"env": {"AIRFLOW__COORDINATOR__PLUGIN_QUEUE_SIZE": "lots"}, "connections": None},
}


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario of SCENARIOS resolved by one Airflow child (airflow.cfg sets ``[coordinator]`` prefix and
    instance for all of them)."""
    names = list(SCENARIOS)
    results = probe(tmp_path_factory.mktemp("precedence"), [SCENARIOS[n] for n in names], cfg=CFG)
    return dict(zip(names, results, strict=True))


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("scenario", "endpoint", "user", "password", "where"),
    [
        pytest.param(
            "env_beats_section_and_connection",
            "http://env-host:1",
            "env-user",
            "env-pw",
            "COORDINATOR_ETCD_ENDPOINTS",
            id="env",
        ),
        pytest.param(
            "section_beats_connection",
            "http://section-host:2",
            "section-user",
            "section-pw",
            "[coordinator] etcd_endpoints (from AIRFLOW__COORDINATOR__ETCD_ENDPOINTS)",
            id="section",
        ),
        pytest.param(
            "connection_beats_defaults",
            "http://conn-host:3",
            "conn-user",
            "conn-pw",
            "connection coordinator_etcd (host/port)",
            id="connection",
        ),
        pytest.param("defaults_without_connection", "http://127.0.0.1:2379", None, None, "default", id="default"),
    ],
)
def test_precedence_env_section_connection_default(
    resolved: dict[str, dict[str, Any]], scenario: str, endpoint: str, user: str, password: str, where: str
) -> None:
    """Each etcd setting comes from the highest place that sets it: env > [coordinator] > connection > default."""
    got = resolved[scenario]
    assert (got["endpoints"], got["username"], got["password"]) == ([endpoint], user, password), got
    assert got["origins"]["etcd_endpoints"] == where


@pytest.mark.airflow
def test_each_setting_resolves_on_its_own(resolved: dict[str, dict[str, Any]]) -> None:
    """Precedence is per setting: endpoints from env, user from the section, password from the connection,
    prefix from airflow.cfg, instance from AIRFLOW__COORDINATOR__INSTANCE over airflow.cfg."""
    got = resolved["each_setting_its_own_source"]
    assert (got["endpoints"], got["username"], got["password"]) == (["http://env-host:1"], "section-user", "conn-pw")
    assert (got["prefix"], got["instance"]) == ("/from-cfg", "section_instance")
    assert got["origins"] == {
        "etcd_endpoints": "COORDINATOR_ETCD_ENDPOINTS",
        "etcd_username": "[coordinator] etcd_username (from AIRFLOW__COORDINATOR__ETCD_USERNAME)",
        "etcd_password": "connection coordinator_etcd (password)",
        "etcd_ca": "default",
        "etcd_cert": "default",
        "etcd_key": "default",
        "etcd_timeout_s": "default",
        "prefix": "[coordinator] prefix (airflow.cfg)",
        "instance": "[coordinator] instance (from AIRFLOW__COORDINATOR__INSTANCE)",
        "plugin_queue_size": "default",
        "plugin_tasks_ttl_s": "default",
        "etcd_conn_id": "default",
        "deps": "default",
    }


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("scenario", "endpoint"),
    [
        pytest.param("airflow_conn_env_variable", "http://env-conn-host:4", id="AIRFLOW_CONN_variable"),
        pytest.param("secrets_backend_before_airflow_conn", "http://conn-host:3", id="backend_first"),
    ],
)
def test_connection_is_found_the_way_airflow_finds_it(
    resolved: dict[str, dict[str, Any]], scenario: str, endpoint: str
) -> None:
    """The connection comes from Airflow's own lookup: the secrets backend first, then AIRFLOW_CONN_*."""
    assert resolved[scenario]["endpoints"] == [endpoint]


@pytest.mark.airflow
def test_extra_endpoints_and_pem_of_a_named_connection(resolved: dict[str, dict[str, Any]]) -> None:
    """A connection named by [coordinator] etcd_conn_id gives endpoints from extra.endpoints and the PEM texts."""
    got = resolved["extra_endpoints_and_pem"]
    assert got["endpoints"] == ["https://a:2379", "https://b:2379"]
    assert got["pem"] == [True, True, True]
    assert got["origins"]["etcd_endpoints"] == "connection my_etcd (extra.endpoints)"
    assert got["origins"]["etcd_key"] == "connection my_etcd (extra.key)"


@pytest.mark.airflow
@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        pytest.param(
            "named_connection_missing",
            "connection 'nowhere' (named by [coordinator] etcd_conn_id (from AIRFLOW__COORDINATOR__ETCD_CONN_ID)) is "
            "not defined",
            id="named_connection_missing",
        ),
        pytest.param(
            "pem_that_is_not_pem",
            "connection 'coordinator_etcd': extra.key must be PEM text",
            id="not_pem",
        ),
        pytest.param(
            "bad_section_value",
            "[coordinator] plugin_queue_size (from AIRFLOW__COORDINATOR__PLUGIN_QUEUE_SIZE)='lots': expected an "
            "integer",
            id="bad_section_value",
        ),
    ],
)
def test_bad_settings_name_their_source(resolved: dict[str, dict[str, Any]], scenario: str, message: str) -> None:
    """An unusable setting is a ConfigError naming where it came from, never the secret's value."""
    error = resolved[scenario]["error"]
    assert error.startswith("ConfigError: ") and message in error, error
    assert "hunter2" not in error


# ----- the listener's path: the connection's TLS material reaches etcd -----


@pytest.mark.airflow
def test_listener_writes_over_mtls_with_pem_from_the_connection(tmp_path: Path) -> None:
    """With no COORDINATOR_* variable, the listener's writer takes prefix and instance from [coordinator] and an
    https endpoint, CA, client certificate and key (PEM text) from the connection, and writes to an mTLS etcd."""
    tls = make_certs(tmp_path)
    assert tls.client_cert_file is not None and tls.client_key_file is not None
    with EtcdServer(tls=tls, unsafe_no_fsync=True) as server:
        port = int(server.endpoint.rsplit(":", 1)[1])
        extra = {
            "ca": tls.ca_file.read_text(),
            "cert": tls.client_cert_file.read_text(),
            "key": tls.client_key_file.read_text(),
        }
        scenario = {
            "env": {"AIRFLOW__COORDINATOR__PREFIX": "/mtls", "AIRFLOW__COORDINATOR__INSTANCE": "managed"},
            "connections": {"coordinator_etcd": conn("127.0.0.1", port, extra=extra)},
            "write": True,
        }
        (result,) = probe(tmp_path, [scenario])
        assert result["flushed"] and result["written"] is not None, result
        key = "/mtls/runs/managed/probe_dag/2026-01-01T00:00:00Z"
        assert result["written"][0] == key
        files = EtcdSettings(
            endpoints=parse_endpoints(server.endpoint),
            ca_file=tls.ca_file,
            cert_file=tls.client_cert_file,
            key_file=tls.client_key_file,
        )

        async def read() -> bytes | None:
            async with await EtcdStore.connect(files) as store:
                kv = await store.get(key)
            return None if kv is None else kv.value

        raw = asyncio_run(read())
        assert raw is not None
        record, _ = parse_run_record(raw)
        assert record is not None and record.state is RunState.SUCCESS and record.source == "airflow-plugin:managed"


def asyncio_run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, 30))


# ----- bounded lookup: a slow or failing secrets backend never blocks Airflow's thread -----


class BlockingLookup:
    """A secrets backend that answers only when released; counts calls and remembers the calling threads."""

    def __init__(self, answer: Callable[[str], ConnectionFields | None]) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self, conn_id: str) -> ConnectionFields | None:
        self.calls += 1
        self.threads.add(threading.get_ident())
        assert self.release.wait(30), "never released"
        return self.answer(conn_id)


@pytest.fixture
def installed() -> Iterator[list[BackgroundWriter]]:
    """Writers installed by a test; closed and uninstalled afterwards."""
    writers: list[BackgroundWriter] = []
    yield writers
    for writer in writers:
        writer.close(1.0)
    install_writer(None)


def test_hook_does_not_wait_for_a_slow_secrets_backend(
    etcd_endpoint: str,
    etcd_prefix: str,
    etcd_settings: EtcdSettings,
    installed: list[BackgroundWriter],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook returns while the connection lookup hangs (it runs on another thread); the writer logs the slow
    backend once, keeps the record queued, and writes it to the connection's etcd once the backend answers."""
    monkeypatch.setenv("COORDINATOR_PREFIX", etcd_prefix)
    lookup = BlockingLookup(lambda conn_id: ConnectionFields(conn_id, endpoints=etcd_endpoint))
    config = local_config()
    assert config.origins["etcd_endpoints"].source is Source.DEFAULT
    writer = BackgroundWriter(config.writer, resolver=ConnectionResolver(config, lookup, wait_s=0.2, retry_s=60))
    installed.append(writer)
    install_writer(writer)
    run = FakeDagRun("slow_backend", "r1", datetime(2026, 1, 1, tzinfo=UTC))
    with caplog.at_level(logging.WARNING, logger="coordinator.airflow_plugin.config"):
        record_dag_run(run, RunState.SUCCESS)  # returns although the lookup cannot answer yet
        assert writer.stats.submitted == 1
        assert not writer.flush(1.0), "nothing can be written before the backend answers"
        assert lookup.calls == 1 and threading.get_ident() not in lookup.threads
        assert writer.last_error is not None and "has not returned connection 'coordinator_etcd'" in writer.last_error
        lookup.release.set()
        assert writer.flush(10.0)
    slow = [r for r in caplog.records if "plugin.connection_slow" in r.getMessage()]
    assert len(slow) == 1, [r.getMessage() for r in caplog.records]
    assert writer.stats.delivered == 1 and lookup.calls == 1
    key = writer.config.keys.run_key(NodeId("default", "slow_backend"), "2026-01-01T00:00:00Z")

    async def read() -> bytes | None:
        async with await EtcdStore.connect(etcd_settings) as store:
            kv = await store.get(key)
        return None if kv is None else kv.value

    assert asyncio_run(read()) is not None


def test_failing_lookup_is_logged_once_and_retried_after_a_pause(caplog: pytest.LogCaptureFixture) -> None:
    """A backend error is one log line per distinct error; meanwhile attempts fail fast without asking the backend
    again, and the next lookup after the pause succeeds."""
    calls: list[float] = []
    failing = True

    def lookup(conn_id: str) -> ConnectionFields | None:
        calls.append(time.monotonic())
        if failing:
            raise RuntimeError("AccessDeniedException: not allowed to read coordinator_etcd")
        return ConnectionFields(conn_id, endpoints="http://etcd.internal:2379")

    resolver = ConnectionResolver(local_config(), lookup, wait_s=5, retry_s=0.5)

    async def attempt() -> EtcdSettings:
        return await resolver.etcd()

    with caplog.at_level(logging.ERROR, logger="coordinator.airflow_plugin.config"):
        for _ in range(2):
            with pytest.raises(StoreUnavailable, match="AccessDeniedException"):
                asyncio_run(attempt())
        with pytest.raises(StoreUnavailable, match="next lookup within"):
            asyncio_run(attempt())  # during the pause: no call to the backend
        assert len(calls) == 1
        time.sleep(0.6)
        with pytest.raises(StoreUnavailable, match="AccessDeniedException"):
            asyncio_run(attempt())  # after the pause: asked again, same error, not logged again
        failing = False
        time.sleep(0.6)
        etcd = asyncio_run(attempt())
    assert etcd.endpoints == parse_endpoints("http://etcd.internal:2379")
    assert len(calls) == 3
    failed = [r for r in caplog.records if "plugin.connection_failed" in r.getMessage()]
    assert len(failed) == 1


def test_callers_that_may_wait_get_a_bounded_lookup() -> None:
    """check-plugin and the report task wait for the connection at most their timeout, then fail naming it."""
    lookup = BlockingLookup(lambda conn_id: None)
    try:
        # The backend never answers before the release below: returning at all proves the bound.
        with pytest.raises(StoreUnavailable, match=r"did not return connection 'coordinator_etcd' within 0\.3 s"):
            resolve_now(timeout_s=0.3, lookup=lookup, import_airflow=False)
        assert lookup.calls == 1 and not lookup.release.is_set()
    finally:
        lookup.release.set()


# ----- check-plugin says where each setting came from -----


@pytest.mark.airflow
def test_check_plugin_names_each_settings_source_never_a_secret(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """check-plugin with settings only in [coordinator] and the connection writes through the listener and prints
    one "source" line per setting, naming the option or connection field, never the password."""
    port = int(etcd_endpoint.rsplit(":", 1)[1])
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"coordinator_etcd": conn("127.0.0.1", port, password="hunter2-secret")}))
    env = {
        **child_env(tmp_path),
        "AIRFLOW__COORDINATOR__PREFIX": etcd_prefix,
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "check-plugin", "--instance", "flagged"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines() if line.startswith("source ")]
    assert lines == [
        "source etcd_endpoints connection coordinator_etcd (host/port)",
        "source etcd_username default",
        "source etcd_password connection coordinator_etcd (password)",
        "source etcd_ca default",
        "source etcd_cert default",
        "source etcd_key default",
        "source etcd_timeout_s default",
        "source prefix [coordinator] prefix (from AIRFLOW__COORDINATOR__PREFIX)",
        "source instance flag --instance",
        "source plugin_queue_size default",
        "source plugin_tasks_ttl_s default",
        "source etcd_conn_id default",
        "source deps default",
    ], done.stdout
    assert f"plugin OK: wrote {etcd_prefix}/runs/flagged/coordinator_check_plugin/" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr
