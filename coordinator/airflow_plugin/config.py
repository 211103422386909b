"""The plugin's settings, the Airflow way: environment, Airflow's ``[coordinator]`` section, an Airflow connection.

Managed Airflow services do not let every deployment set environment variables (MWAA sets only Airflow options,
``AIRFLOW__SECTION__KEY``) and keep secrets in the secrets backend the deployment configured (Secret Manager, AWS
Secrets Manager, Vault). So each plugin setting is looked up in four places, first hit wins:

- **Precedence** per setting: ``COORDINATOR_<OPTION>`` environment variable > Airflow configuration
  ``[coordinator] <option>`` (``airflow.cfg`` or ``AIRFLOW__COORDINATOR__<OPTION>``) > the Airflow connection named by
  ``etcd_conn_id`` (default ``coordinator_etcd``; only the etcd endpoints, credentials and TLS material) > defaults. A
  setting with two forms (``etcd_password`` / ``etcd_password_file``) is taken whole from the first place that sets
  either form.
- **The connection**: ``extra.endpoints`` (comma-separated URLs, or a list), else ``host`` (a URL, or a
  bare host with ``port``, default 2379: ``https`` when the connection carries TLS material or ``extra.tls`` is true);
  ``login`` and ``password``; ``extra.ca``, ``extra.cert``, ``extra.key`` as PEM text, handed to the etcd client as
  bytes (never written to disk). Airflow resolves it the way it resolves every connection: the configured secrets
  backend, then ``AIRFLOW_CONN_<ID>``, then its database (in a task: through the API server). A missing
  ``coordinator_etcd`` is normal (environment and ``[coordinator]`` suffice); a connection id set on purpose that is
  missing is an error.
- **Cheap reads.** Reading the environment and ``[coordinator]`` is local and cheap (Airflow holds its configuration in
  memory): :func:`local_config` runs where the writer is created. The connection lookup can be slow (a secrets backend
  across the network), so the listener's writer never waits for it on Airflow's thread: :class:`ConnectionResolver` runs
  it once per process in a thread of its own, and the writer's thread waits for it at most :data:`LOOKUP_WAIT_S` per
  attempt (records stay queued meanwhile); a slow or failing lookup is logged once and tried again at most every
  :data:`LOOKUP_RETRY_S`.
- **Only where Airflow is loaded.** Airflow's configuration is only read in a process where Airflow is already loaded
  (every Airflow process, and ``check-plugin`` once it imported the plugin): the plugin's settings never make a process
  import Airflow.
- **No secrets shown.** Secrets are never logged or printed: :class:`Origin` names where a value came from, never the
  value.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretBytes, SecretStr, ValidationError

from coordinator.airflow_plugin.records import WriterConfig, make_config
from coordinator.core.model import DEFAULT_INSTANCE
from coordinator.errors import ConfigError, StoreUnavailable
from coordinator.runtime.settings import EtcdSettings, Settings, parse_endpoints

log = logging.getLogger(__name__)

#: The Airflow configuration section of the plugin (``AIRFLOW__COORDINATOR__<OPTION>``).
SECTION = "coordinator"
ENV_PREFIX = "COORDINATOR_"
DEFAULT_CONN_ID = "coordinator_etcd"
#: The writer's thread waits this long per attempt for the connection lookup before it counts the attempt as failed
#: (etcd "not reachable yet"): secrets backends answer in well under a second; 5 s rides out a slow one without
#: holding records for long, and the lookup itself keeps running.
LOOKUP_WAIT_S = 5.0
#: After a lookup failed (backend error, connection missing or invalid), the next one starts no sooner than this:
#: a secrets backend is a paid, rate-limited API and a fix (creating the secret) takes minutes anyway.
LOOKUP_RETRY_S = 30.0


class Source(StrEnum):
    FLAG = "flag"
    ENV = "env"
    AIRFLOW_CONFIG = "airflow-config"
    CONNECTION = "connection"
    DEFAULT = "default"


@dataclass(frozen=True)
class Origin:
    """Where one setting came from, in words an operator can act on (``[coordinator] etcd_endpoints (from
    AIRFLOW__COORDINATOR__ETCD_ENDPOINTS)``); never the value."""

    source: Source
    where: str = "default"


@dataclass(frozen=True)
class PluginSetting:
    """One plugin setting: its ``[coordinator]`` options (the environment variable of each is ``COORDINATOR_`` +
    upper case) and the connection field that may supply it."""

    name: str
    options: tuple[str, ...]
    connection_field: str | None = None


#: Every plugin setting, in the order check-plugin prints them.
SETTINGS: tuple[PluginSetting, ...] = (
    PluginSetting("etcd_endpoints", ("etcd_endpoints",), "host/port or extra.endpoints"),
    PluginSetting("etcd_username", ("etcd_username",), "login"),
    PluginSetting("etcd_password", ("etcd_password", "etcd_password_file"), "password"),
    PluginSetting("etcd_ca", ("etcd_ca_file",), "extra.ca"),
    PluginSetting("etcd_cert", ("etcd_cert_file",), "extra.cert"),
    PluginSetting("etcd_key", ("etcd_key_file",), "extra.key"),
    PluginSetting("etcd_timeout_s", ("etcd_timeout_s",)),
    PluginSetting("prefix", ("prefix",)),
    PluginSetting("instance", ("instance",)),
    PluginSetting("plugin_queue_size", ("plugin_queue_size",)),
    # How long the named upstream tasks (the adopted graph's upstream_tasks) are reused before etcd is asked again.
    PluginSetting("plugin_tasks_ttl_s", ("plugin_tasks_ttl_s",)),
    PluginSetting("etcd_conn_id", ("etcd_conn_id",)),
    # The dependencies page's graph before a watcher adopted one (api-server only).
    PluginSetting("deps", ("deps",)),
)
#: check-plugin's flags, by the option they set (for the "source" lines).
FLAGS = {"etcd_endpoints": "--etcd", "prefix": "--prefix", "instance": "--instance"}
#: Options that are fields of :class:`~coordinator.runtime.settings.Settings` (the others are the plugin's own).
_PLUGIN_ONLY = {"instance", "plugin_queue_size", "plugin_tasks_ttl_s", "etcd_conn_id"}


def env_var(option: str) -> str:
    return ENV_PREFIX + option.upper()


def airflow_env_var(option: str) -> str:
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


@dataclass(frozen=True)
class PluginConfig:
    """The writer's configuration and where each setting came from. ``writer.etcd`` holds what the environment,
    ``[coordinator]`` and defaults give until :func:`with_connection` merged the connection in."""

    writer: WriterConfig
    origins: Mapping[str, Origin]
    conn_id: str
    #: The connection id was set on purpose (not the default): its absence is an error.
    conn_explicit: bool
    #: The coordinator settings with the same values (the dependencies page reads ``deps`` and ``keys`` from it).
    settings: Settings

    def wants_connection(self) -> bool:
        """Whether the connection could still supply something (a connection setting is at its default)."""
        return any(s.connection_field is not None and self.origins[s.name].source is Source.DEFAULT for s in SETTINGS)

    def describe(self) -> list[str]:
        """``name: where`` per setting (check-plugin's "sources" lines); never a value."""
        width = max(len(s.name) for s in SETTINGS)
        return [f"{s.name.ljust(width)}  {self.origins[s.name].where}" for s in SETTINGS]


def airflow_conf(import_airflow: bool) -> Any | None:
    """Airflow's configuration object, or None where Airflow is not loaded (**Only where Airflow is loaded**) or not
    installed."""
    if not import_airflow and "airflow" not in sys.modules:
        return None
    try:
        from airflow.configuration import conf
    except Exception:  # not installed, or broken: the environment and defaults still work
        return None
    return conf


def conf_get(conf: Any, option: str) -> str | None:
    if conf is None:
        return None
    try:
        value = conf.get(SECTION, option, fallback=None)
    except Exception:  # a broken airflow.cfg is Airflow's to report; the plugin falls back to the next source
        return None
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def local_config(flags: Mapping[str, str] | None = None, *, import_airflow: bool = False) -> PluginConfig:
    """The settings that do not need the connection: flags (check-plugin's ``--etcd``, ``--prefix``, ``--instance``,
    keyed by option name) > environment > ``[coordinator]`` > defaults. ConfigError names the bad setting's origin."""
    env = os.environ
    conf = airflow_conf(import_airflow)
    values: dict[str, str] = {}
    origins: dict[str, Origin] = {}
    for setting in SETTINGS:
        origin = Origin(Source.DEFAULT)
        for option in setting.options:
            flag = (flags or {}).get(option)
            if flag is not None:
                values[option], origin = flag, Origin(Source.FLAG, f"flag {FLAGS.get(option, option)}")
                break
        else:
            given = [o for o in setting.options if env.get(env_var(o), "").strip()]
            if given:
                origin = Origin(Source.ENV, env_var(given[0]))
                values.update({o: env[env_var(o)].strip() for o in given})
            else:
                for option in setting.options:
                    value = conf_get(conf, option)
                    if value is None:
                        continue
                    via = f"from {airflow_env_var(option)}" if env.get(airflow_env_var(option)) else "airflow.cfg"
                    values[option], origin = value, Origin(Source.AIRFLOW_CONFIG, f"[{SECTION}] {option} ({via})")
                    break
        origins[setting.name] = origin
    try:
        # Explicit values win over pydantic-settings' own reading of COORDINATOR_*, which only fills what is unset.
        overrides: dict[str, Any] = {k: v for k, v in values.items() if k not in _PLUGIN_ONLY}
        settings = Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(f"{_where(origins, option)}: {error['msg']}") from exc
    instance = values.get("instance", DEFAULT_INSTANCE)
    raw_size = values.get("plugin_queue_size")
    try:
        queue_size = int(raw_size) if raw_size else WriterConfig.queue_size
    except ValueError as exc:
        raise ConfigError(f"{_where(origins, 'plugin_queue_size')}={raw_size!r}: expected an integer") from exc
    raw_ttl = values.get("plugin_tasks_ttl_s")
    try:
        tasks_ttl_s = float(raw_ttl) if raw_ttl else WriterConfig.tasks_ttl_s
    except ValueError as exc:
        raise ConfigError(f"{_where(origins, 'plugin_tasks_ttl_s')}={raw_ttl!r}: expected a number of seconds") from exc
    try:
        writer = make_config(settings, instance, queue_size, tasks_ttl_s)
    except ConfigError as exc:
        where = " / ".join(_where(origins, o) for o in ("instance", "plugin_queue_size", "plugin_tasks_ttl_s"))
        raise ConfigError(f"{where}: {exc}") from exc
    conn_id = values.get("etcd_conn_id", DEFAULT_CONN_ID)
    return PluginConfig(writer, origins, conn_id, origins["etcd_conn_id"].source is not Source.DEFAULT, settings)


def _where(origins: Mapping[str, Origin], option: str) -> str:
    for setting in SETTINGS:
        if option in setting.options:
            origin = origins[setting.name]
            return env_var(option) if origin.source is Source.DEFAULT else origin.where
    return option


# ----- the connection -----


@dataclass(frozen=True)
class ConnectionFields:
    """What an Airflow connection gives the plugin (secrets held as Secret*: never printed)."""

    conn_id: str
    endpoints: str | None = None
    endpoints_from: str = "host/port"
    login: str | None = None
    password: SecretStr | None = None
    ca: bytes | None = None
    cert: bytes | None = None
    key: SecretBytes | None = None


def connection_fields(conn_id: str, conn: Any) -> ConnectionFields:
    """Read an Airflow ``Connection`` (either Airflow's ORM one or the Task SDK's; duck-typed) by the **The connection**
    rule of the module. ConfigError names the connection and the field, never its value."""
    extra = conn.extra_dejson or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"connection {conn_id!r}: extra must be a JSON object")

    def pem(name: str) -> bytes | None:
        value = extra.get(name)
        if value in (None, ""):
            return None
        if not isinstance(value, str) or "-----BEGIN " not in value:
            raise ConfigError(f"connection {conn_id!r}: extra.{name} must be PEM text (-----BEGIN ...)")
        return value.encode()

    ca, cert, key = pem("ca"), pem("cert"), pem("key")
    endpoints, endpoints_from = extra.get("endpoints"), "extra.endpoints"
    if isinstance(endpoints, list):
        endpoints = ",".join(str(e) for e in endpoints)
    if endpoints is not None and not isinstance(endpoints, str):
        raise ConfigError(f"connection {conn_id!r}: extra.endpoints must be a string or a list of URLs")
    if not endpoints and conn.host:
        endpoints_from, host, port = "host/port", str(conn.host).strip(), conn.port
        if "://" in host:
            endpoints = host if port is None or urlsplit(host).port is not None else f"{host.rstrip('/')}:{port}"
        else:
            tls = bool(ca or cert or extra.get("tls") in (True, "true", "True"))
            endpoints = f"{'https' if tls else 'http'}://{host}:{port or 2379}"
    return ConnectionFields(
        conn_id=conn_id,
        endpoints=endpoints or None,
        endpoints_from=endpoints_from,
        login=conn.login or None,
        password=SecretStr(conn.password) if conn.password else None,
        ca=ca,
        cert=cert,
        key=SecretBytes(key) if key else None,
    )


def lookup_connection(conn_id: str) -> ConnectionFields | None:
    """Airflow's own connection lookup (secrets backend, ``AIRFLOW_CONN_*``, database); None when not defined or
    Airflow is not loaded. Blocking: may call a secrets backend over the network."""
    if "airflow" not in sys.modules:
        return None
    try:
        runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
        if getattr(runner, "SUPERVISOR_COMMS", None) is not None:
            # An Airflow 3 task process: no database here; the Task SDK asks the API server (secrets backend first).
            from airflow.sdk import Connection as SdkConnection

            conn = SdkConnection.get(conn_id)
        else:
            # Scheduler, api-server, a CLI, and every Airflow 2 process: backend, environment, then the database.
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:
        # airflow.exceptions and the Task SDK each define it; the name is what both share.
        if type(exc).__name__ == "AirflowNotFoundException":
            return None
        raise
    return connection_fields(conn_id, conn)


def with_connection(config: PluginConfig, conn: ConnectionFields | None) -> PluginConfig:
    """Fill the settings still at their defaults from the connection (**Precedence**); ConfigError if it is unusable."""
    if conn is None:
        if config.conn_explicit:
            raise ConfigError(
                f"connection {config.conn_id!r} (named by {config.origins['etcd_conn_id'].where}) is not defined in "
                "the secrets backend, AIRFLOW_CONN_* or Airflow's database"
            )
        return config
    origins = dict(config.origins)
    update: dict[str, Any] = {}

    def take(name: str, field: str, value: Any, detail: str) -> None:
        if value is not None and origins[name].source is Source.DEFAULT:
            update[field] = value
            origins[name] = Origin(Source.CONNECTION, f"connection {conn.conn_id} ({detail})")

    if conn.endpoints is not None and origins["etcd_endpoints"].source is Source.DEFAULT:
        try:
            take("etcd_endpoints", "endpoints", parse_endpoints(conn.endpoints), conn.endpoints_from)
        except ConfigError as exc:
            raise ConfigError(f"connection {conn.conn_id!r} ({conn.endpoints_from}): {exc}") from exc
    take("etcd_username", "username", conn.login, "login")
    take("etcd_password", "password", conn.password, "password")
    take("etcd_ca", "ca_pem", conn.ca, "extra.ca")
    take("etcd_cert", "cert_pem", conn.cert, "extra.cert")
    take("etcd_key", "key_pem", conn.key, "extra.key")
    etcd = config.writer.etcd.model_copy(update=update)
    return replace(config, writer=replace(config.writer, etcd=etcd), origins=origins)


def resolve_now(
    flags: Mapping[str, str] | None = None,
    *,
    timeout_s: float,
    lookup: Callable[[str], ConnectionFields | None] = lookup_connection,
    import_airflow: bool = True,
) -> PluginConfig:
    """Every setting, the connection included, for callers that may wait (check-plugin, the explicit task):
    ConfigError when a setting or the connection is invalid, StoreUnavailable when the lookup takes longer than
    ``timeout_s`` (it keeps running in its thread; the process is about to report and exit anyway)."""
    config = local_config(flags, import_airflow=import_airflow)
    if not config.wants_connection() and not config.conn_explicit:
        return config
    future: concurrent.futures.Future[ConnectionFields | None] = concurrent.futures.Future()
    _start_lookup(config.conn_id, lookup, future)
    try:
        conn = future.result(timeout_s)
    except concurrent.futures.TimeoutError:
        raise StoreUnavailable(
            f"the secrets backend did not return connection {config.conn_id!r} within {timeout_s:g} s"
        ) from None
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"looking up connection {config.conn_id!r} failed: {error_text(exc)}") from exc
    return with_connection(config, conn)


def _start_lookup(
    conn_id: str,
    lookup: Callable[[str], ConnectionFields | None],
    future: concurrent.futures.Future[ConnectionFields | None],
) -> None:
    def run() -> None:
        try:
            result = lookup(conn_id)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    # A daemon thread: a secrets backend that never answers must not keep the process from exiting.
    threading.Thread(target=run, name="coordinator-connection-lookup", daemon=True).start()


def error_text(exc: BaseException) -> str:
    # Bounded: an error must not carry a whole secret document into a log line.
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class ConnectionResolver:
    """The listener's etcd settings with the connection merged in, looked up once per process off Airflow's thread
    (**Cheap reads**). :meth:`etcd` is awaited by the writer's thread before it connects; it raises StoreUnavailable
    while the lookup is slow or failing, which the writer retries like an unreachable etcd (its records stay queued)."""

    def __init__(
        self,
        config: PluginConfig,
        lookup: Callable[[str], ConnectionFields | None] = lookup_connection,
        *,
        wait_s: float = LOOKUP_WAIT_S,
        retry_s: float = LOOKUP_RETRY_S,
    ) -> None:
        self.config = config
        self._lookup = lookup
        self._wait_s = wait_s
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._resolved: PluginConfig | None = None
        self._future: concurrent.futures.Future[ConnectionFields | None] | None = None
        self._started_at = 0.0
        self._failed_at: float | None = None
        self._last_error: str | None = None
        self._slow_logged = False
        self._pid = os.getpid()
        if not config.wants_connection() and not config.conn_explicit:
            self._done(config, looked_up=False)

    @property
    def resolved(self) -> PluginConfig | None:
        """The full configuration once the lookup succeeded (check-plugin and tests read it)."""
        return self._resolved

    async def etcd(self) -> EtcdSettings:
        resolved = self._resolved
        if resolved is not None:
            return resolved.writer.etcd
        future = self._current_lookup()
        try:
            conn = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self._wait_s)
            resolved = with_connection(self.config, conn)
        except TimeoutError:
            waited = time.monotonic() - self._started_at
            if not self._slow_logged:  # once per process: the write retries log the rest
                self._slow_logged = True
                log.warning(
                    "plugin.connection_slow conn_id=%s waited_s=%.1f detail=%r",
                    self.config.conn_id,
                    waited,
                    "records stay queued until the secrets backend answers",
                )
            raise StoreUnavailable(
                f"the secrets backend has not returned connection {self.config.conn_id!r} after {waited:.0f} s"
            ) from None
        except Exception as exc:
            raise self._failed(exc) from exc
        self._done(resolved, looked_up=True)
        return resolved.writer.etcd

    def _current_lookup(self) -> concurrent.futures.Future[ConnectionFields | None]:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's lookup thread does not exist here
                self._pid, self._future = os.getpid(), None
            if self._future is None:
                if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_s:
                    raise StoreUnavailable(
                        f"connection {self.config.conn_id!r}: {self._last_error} (next lookup within "
                        f"{self._retry_s:g} s)"
                    )
                self._future = concurrent.futures.Future()
                self._started_at = time.monotonic()
                _start_lookup(self.config.conn_id, self._lookup, self._future)
            return self._future

    def _failed(self, exc: BaseException) -> StoreUnavailable:
        error = error_text(exc)
        with self._lock:
            self._future, self._failed_at = None, time.monotonic()
            changed, self._last_error = error != self._last_error, error
        if changed:  # each distinct problem once, not once per retry
            log.error(
                "plugin.connection_failed conn_id=%s error=%r retry_s=%g detail=%r",
                self.config.conn_id,
                error,
                self._retry_s,
                "records stay queued; fix the connection or set the etcd options",
            )
        return StoreUnavailable(f"connection {self.config.conn_id!r}: {error}")

    def _done(self, resolved: PluginConfig, *, looked_up: bool) -> None:
        self._resolved = resolved
        etcd = resolved.writer.etcd
        log.info(
            "plugin.settings instance=%s prefix=%s etcd=%s etcd_user=%s conn_id=%s connection=%s sources=%s",
            resolved.writer.instance,
            resolved.writer.keys.prefix,
            ",".join(f"{'https' if e.tls else 'http'}://{e.host}:{e.port}" for e in etcd.endpoints),
            etcd.username or "-",
            resolved.conn_id,
            "looked-up" if looked_up else "not-needed",
            ",".join(f"{name}:{o.source}" for name, o in resolved.origins.items() if o.source is not Source.DEFAULT)
            or "-",
        )
