"""The dependencies page's own etcd credential (coordinator/airflow_plugin/page_credential.py): where it comes from,
in which order, and what a missing or half-set one does. The lookup is injected (Airflow's own is covered by
tests/test_plugin_config.py); tests/test_roles.py shows the page reading under its own user on a real etcd with auth."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from coordinator.airflow_plugin.config import ConnectionFields, local_config
from coordinator.airflow_plugin.page_credential import DEFAULT_PAGE_CONN_ID, PageResolver, read_options
from coordinator.errors import ConfigError
from coordinator.runtime.settings import EtcdSettings

PLUGIN_CONN = ConnectionFields("coordinator_etcd", login="plugin-user", password=SecretStr("plugin-pw"))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment with only the plugin's endpoint set (no Airflow loaded: no [coordinator] section)."""
    import os

    for name in [k for k in os.environ if k.startswith(("COORDINATOR_", "AIRFLOW__COORDINATOR__"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COORDINATOR_ETCD_ENDPOINTS", "http://127.0.0.1:2379")
    return monkeypatch


def lookup_of(connections: dict[str, ConnectionFields]) -> Callable[[str], ConnectionFields | None]:
    def lookup(conn_id: str) -> ConnectionFields | None:
        return connections.get(conn_id)

    return lookup


def resolve(arun: Any, connections: dict[str, ConnectionFields]) -> EtcdSettings:
    resolver = PageResolver(local_config(), read_options(), lookup_of(connections))
    settings: EtcdSettings = arun(resolver.etcd())
    return settings


def test_page_options_win_over_the_page_connection_and_the_plugin(
    env: pytest.MonkeyPatch, tmp_path: Path, arun: Any
) -> None:
    """COORDINATOR_PAGE_ETCD_USERNAME with its password file is the page's user even where the page connection and
    the plugin's user exist; endpoints stay the plugin's."""
    password = tmp_path / "page-pw"
    password.write_text("page-secret\n")
    env.setenv("COORDINATOR_ETCD_USERNAME", "plugin-user")
    env.setenv("COORDINATOR_PAGE_ETCD_USERNAME", "page-user")
    env.setenv("COORDINATOR_PAGE_ETCD_PASSWORD_FILE", str(password))
    page_conn = ConnectionFields(DEFAULT_PAGE_CONN_ID, login="conn-user", password=SecretStr("conn-pw"))
    settings = resolve(arun, {DEFAULT_PAGE_CONN_ID: page_conn})
    assert settings.username == "page-user"
    assert settings.password is not None and settings.password.get_secret_value() == "page-secret"
    assert [f"{e.host}:{e.port}" for e in settings.endpoints] == ["127.0.0.1:2379"]


def test_the_page_connection_gives_login_endpoints_and_tls(env: pytest.MonkeyPatch, arun: Any) -> None:
    """Without page options, the coordinator_etcd_page connection's login, password, endpoints and CA are used over
    the plugin's environment user and connection."""
    env.setenv("COORDINATOR_ETCD_USERNAME", "plugin-user")
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    page_conn = ConnectionFields(DEFAULT_PAGE_CONN_ID, endpoints="https://etcd-page:2379", login="conn-user",
                                 password=SecretStr("conn-pw"), ca=ca)  # fmt: skip
    settings = resolve(arun, {DEFAULT_PAGE_CONN_ID: page_conn, "coordinator_etcd": PLUGIN_CONN})
    assert settings.username == "conn-user"
    assert settings.password is not None and settings.password.get_secret_value() == "conn-pw"
    assert [f"{e.host}:{e.port}" for e in settings.endpoints] == ["etcd-page:2379"] and settings.ca_pem == ca


def test_without_a_page_credential_the_plugins_is_used_and_said_once(
    env: pytest.MonkeyPatch, arun: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No page options and no page connection: the page reads as the plugin's user (from the plugin's connection)
    and logs page.shared_credential once, naming the user but no password."""
    resolver = PageResolver(local_config(), read_options(), lookup_of({"coordinator_etcd": PLUGIN_CONN}))
    with caplog.at_level(logging.WARNING, logger="coordinator.airflow_plugin.page_credential"):
        first = arun(resolver.etcd())
        arun(resolver.etcd())
    assert first.username == "plugin-user"
    lines = [r.getMessage() for r in caplog.records if "page.shared_credential" in r.getMessage()]
    assert len(lines) == 1 and "etcd_user=plugin-user" in lines[0] and "plugin-pw" not in lines[0]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param(
            {"COORDINATOR_PAGE_ETCD_PASSWORD": "x"},
            "COORDINATOR_PAGE_ETCD_PASSWORD is set but page_etcd_username is not",
            id="password-without-user",
        ),
        pytest.param(
            {"COORDINATOR_PAGE_ETCD_USERNAME": "u", "COORDINATOR_PAGE_ETCD_PASSWORD_FILE": "/nonexistent/pw"},
            "cannot read page etcd password file /nonexistent/pw",
            id="unreadable-password-file",
        ),
        pytest.param(
            {"COORDINATOR_PAGE_ETCD_CONN_ID": "my_page_conn"},
            "connection 'my_page_conn' (named by COORDINATOR_PAGE_ETCD_CONN_ID) is not defined",
            id="named-connection-missing",
        ),
    ],
)
def test_a_half_set_or_missing_page_credential_is_a_clear_error(
    env: pytest.MonkeyPatch, arun: Any, variables: dict[str, str], message: str
) -> None:
    """A page password without a user, an unreadable password file, or a page connection named on purpose that
    does not exist: ConfigError naming the setting (the page answers 503 with it), never a silent fallback."""
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(arun, {})
