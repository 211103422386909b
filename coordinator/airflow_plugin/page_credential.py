"""The dependencies page's own etcd credential: one credential per component, inside one api-server process.

The api-server hosts two components: the plugin's listener (it writes its instance's run states, under the plugin
role ``{base}-plugin-{instance}``) and the dependencies page (it reads the whole prefix, under the page role
``{base}-page``). Giving the plugin's user the page's role would let every plugin credential (held by each scheduler
and worker) read the ledger, other instances' run states and the watchers' Airflow URLs; so the page logs in as a
user of its own. Rules:

- **Credential sources.** Where the page's credential comes from, first hit wins: the options ``page_etcd_username`` and
  ``page_etcd_password`` / ``page_etcd_password_file`` (environment ``COORDINATOR_PAGE_ETCD_*`` or Airflow's
  ``[coordinator]`` section) > the Airflow connection named by ``page_etcd_conn_id`` (default ``coordinator_etcd_page``:
  its login and password, and its endpoints and TLS material where it has them) > the plugin's own credential (an etcd
  without auth needs nothing more).
- **The rest is the plugin's.** Everything else (endpoints, TLS, timeout, prefix, instance) is the plugin's
  (:mod:`coordinator.airflow_plugin. config`), so one set of ``[coordinator]`` options serves both components.
- **Missing on purpose is an error.** A page connection named on purpose that is missing is an error; the default one
  missing is normal (**Credential sources** falls through to the plugin's credential, logged once as
  ``page.shared_credential`` so an operator under etcd auth sees why the page cannot read).
- **Slow lookups off the loop.** The connection lookup may be slow (a secrets backend): it runs off the event loop, at
  most :data:`~coordinator.airflow_plugin.config.LOOKUP_WAIT_S` per request (then 503, "try again"), and a failure is
  retried no sooner than :data:`~coordinator.airflow_plugin.config.LOOKUP_RETRY_S`.
- **No secrets logged.** Secrets are never logged: the log names the user and where it came from, never a password.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from coordinator.airflow_plugin.config import (
    LOOKUP_RETRY_S,
    LOOKUP_WAIT_S,
    ConnectionFields,
    ConnectionResolver,
    PluginConfig,
    airflow_conf,
    airflow_env_var,
    conf_get,
    env_var,
    error_text,
    lookup_connection,
)
from coordinator.errors import ConfigError, StoreUnavailable
from coordinator.runtime.settings import EtcdSettings, parse_endpoints, read_secret

log = logging.getLogger(__name__)

DEFAULT_PAGE_CONN_ID = "coordinator_etcd_page"
#: The page's own options (**Credential sources**), each also ``COORDINATOR_<OPTION>`` and
#: ``AIRFLOW__COORDINATOR__<OPTION>``.
PAGE_OPTIONS = ("page_etcd_username", "page_etcd_password", "page_etcd_password_file", "page_etcd_conn_id")


@dataclass(frozen=True)
class PageCredential:
    """Who the page logs in as, and where that came from (never the password in words)."""

    username: str
    password: SecretStr | None
    origin: str


@dataclass(frozen=True)
class PageOptions:
    """The page options found in the environment or ``[coordinator]``: name -> (value, where)."""

    values: Mapping[str, tuple[str, str]]

    def get(self, option: str) -> str | None:
        found = self.values.get(option)
        return None if found is None else found[0]

    def where(self, option: str) -> str:
        found = self.values.get(option)
        return env_var(option) if found is None else found[1]


def read_options(env: Mapping[str, str] | None = None, *, import_airflow: bool = False) -> PageOptions:
    """The page's options, environment before ``[coordinator]`` (the plugin's precedence)."""
    env = os.environ if env is None else env
    conf = airflow_conf(import_airflow)
    values: dict[str, tuple[str, str]] = {}
    for option in PAGE_OPTIONS:
        if env.get(env_var(option), "").strip():
            values[option] = (env[env_var(option)].strip(), env_var(option))
            continue
        value = conf_get(conf, option)
        if value is not None:
            via = f"from {airflow_env_var(option)}" if env.get(airflow_env_var(option)) else "airflow.cfg"
            values[option] = (value, f"[coordinator] {option} ({via})")
    return PageOptions(values)


def local_credential(options: PageOptions) -> PageCredential | None:
    """**Credential sources**' first source; ConfigError when a password is given without a user, or its file is
    unreadable."""
    username = options.get("page_etcd_username")
    password, password_file = options.get("page_etcd_password"), options.get("page_etcd_password_file")
    if username is None:
        if password is not None or password_file is not None:
            given = options.where("page_etcd_password" if password is not None else "page_etcd_password_file")
            raise ConfigError(f"{given} is set but page_etcd_username is not: set both, or neither")
        return None
    secret = read_secret(
        SecretStr(password) if password is not None else None,
        Path(password_file) if password_file is not None else None,
        "page etcd password",
    )
    return PageCredential(username, secret, options.where("page_etcd_username"))


def apply_connection(etcd: EtcdSettings, conn: ConnectionFields) -> EtcdSettings:
    """The plugin's etcd settings with the page connection's login, and its endpoints and TLS where it has them."""
    update: dict[str, Any] = {"username": conn.login, "password": conn.password}
    if conn.endpoints is not None:
        try:
            update["endpoints"] = parse_endpoints(conn.endpoints)
        except ConfigError as exc:
            raise ConfigError(f"connection {conn.conn_id!r} ({conn.endpoints_from}): {exc}") from exc
    for field, value in (("ca_pem", conn.ca), ("cert_pem", conn.cert), ("key_pem", conn.key)):
        if value is not None:
            update[field] = value
    return etcd.model_copy(update=update)


class PageResolver:
    """The page's etcd settings (**Credential sources** to **No secrets logged**): the plugin's, resolved by its own
    :class:`ConnectionResolver`, with the page's credential on top."""

    def __init__(
        self,
        plugin: PluginConfig,
        options: PageOptions,
        lookup: Callable[[str], ConnectionFields | None] = lookup_connection,
        *,
        wait_s: float = LOOKUP_WAIT_S,
        retry_s: float = LOOKUP_RETRY_S,
    ) -> None:
        self.config = plugin
        self._plugin = ConnectionResolver(plugin, lookup, wait_s=wait_s, retry_s=retry_s)
        self._local = local_credential(options)
        self._conn_id = options.get("page_etcd_conn_id") or DEFAULT_PAGE_CONN_ID
        self._conn_explicit = options.get("page_etcd_conn_id") is not None
        self._conn_where = options.where("page_etcd_conn_id")
        self._lookup = lookup
        self._wait_s, self._retry_s = wait_s, retry_s
        self._conn: ConnectionFields | None = None
        self._looked_up = False
        self._task: asyncio.Future[ConnectionFields | None] | None = None
        self._failed_at: float | None = None
        self._logged = False

    async def etcd(self) -> EtcdSettings:
        """The settings the page connects with; StoreUnavailable while a lookup is slow or failing."""
        base = await self._plugin.etcd()
        if self._local is not None:
            self._log_once(self._local.username, self._local.origin)
            return base.model_copy(update={"username": self._local.username, "password": self._local.password})
        conn = await self._page_connection()
        if conn is not None and conn.login:
            self._log_once(conn.login, f"connection {conn.conn_id} (login)")
            return apply_connection(base, conn)
        if not self._logged:
            self._logged = True
            log.warning(
                "page.shared_credential etcd_user=%s detail=%r",
                base.username or "-",
                "the page reads as the plugin's user; under etcd auth give it its own "
                f"(page_etcd_username or connection {self._conn_id}) with the page role of `coordinator roles`",
            )
        return base

    async def _page_connection(self) -> ConnectionFields | None:
        if self._looked_up:
            return self._conn
        if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_s:
            raise StoreUnavailable(f"connection {self._conn_id!r} failed recently; next lookup soon")
        # one lookup at a time; concurrent requests wait for the same one (**Slow lookups off the loop**)
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self._lookup, self._conn_id))
        try:
            conn = await asyncio.wait_for(asyncio.shield(self._task), self._wait_s)
        except TimeoutError:
            raise StoreUnavailable(f"the secrets backend has not returned connection {self._conn_id!r}") from None
        except Exception as exc:
            self._task, self._failed_at = None, time.monotonic()
            log.error("page.connection_failed conn_id=%s error=%r", self._conn_id, error_text(exc))
            raise StoreUnavailable(f"connection {self._conn_id!r}: {error_text(exc)}") from exc
        if conn is None and self._conn_explicit:
            self._task = None
            raise ConfigError(
                f"connection {self._conn_id!r} (named by {self._conn_where}) is not defined in the secrets backend, "
                "AIRFLOW_CONN_* or Airflow's database"
            )
        self._conn, self._looked_up = conn, True
        return conn

    def _log_once(self, username: str, origin: str) -> None:
        if not self._logged:
            self._logged = True
            log.info("page.credential etcd_user=%s from=%r", username, origin)
