"""Configuration from flags and environment variables (pydantic-settings).

Rules:
- **An environment variable each.** Every setting has an environment variable ``COORDINATOR_<NAME>``; a CLI flag
  overrides it.
- **Secrets from the environment or a file.** Secrets (etcd and Airflow passwords) come from the environment or from a
  file (``*_FILE``), are held as ``SecretStr`` and are never logged or printed; ``dependencies.json`` never holds them.
- **Every default explained.** Every default says why it is that number.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretBytes, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordinator.core.adoption import DEFAULT_FIRST_START_LIMIT, HistoryChoice
from coordinator.core.budget import DEFAULT_TRIGGER_BUDGET, DEFAULT_TRIGGER_BUDGET_WINDOW_S
from coordinator.core.budget_allowance import DEFAULT_DAG_ALLOWANCE_FLOOR
from coordinator.core.model import DEFAULT_INSTANCE, DEFAULT_PREFIX, NAME_RE, KeyLayout
from coordinator.core.retention import parse_duration
from coordinator.errors import ConfigError
from coordinator.runtime.instance_auth import AuthConfig, PasswordAuth, parse_auth

#: Where the single-instance shorthand's credentials come from (instance ``default``).
DEFAULT_CREDENTIALS = (
    "COORDINATOR_AIRFLOW_USERNAME and COORDINATOR_AIRFLOW_PASSWORD (or COORDINATOR_AIRFLOW_PASSWORD_FILE)"
)

#: 10 minutes to load the view before /healthz says the start failed: a 5,000-DAG x 365-day estate (3.5 million keys)
#: loads in under a minute on 2 cores; ten times that leaves room for a slow node or a busy etcd.
DEFAULT_START_TIMEOUT_S = 600.0


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> SecretStr | None:
    """The secret from its file when one is named (trailing newline stripped), else the direct value."""
    if file is None:
        return value
    try:
        return SecretStr(file.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {file}: {exc.strerror}") from exc


class Endpoint(BaseModel):
    """One etcd endpoint."""

    host: str
    port: int
    tls: bool


def parse_endpoints(text: str) -> list[Endpoint]:
    """Parse ``http(s)://host:port[,...]``; raise ConfigError naming the bad entry."""
    endpoints: list[Endpoint] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid etcd endpoint {raw!r}: expected http(s)://host:port")
        try:
            port = parts.port or 2379
        except ValueError as exc:
            raise ConfigError(f"invalid etcd endpoint {raw!r}: bad port") from exc
        endpoints.append(Endpoint(host=parts.hostname, port=port, tls=parts.scheme == "https"))
    if not endpoints:
        raise ConfigError("no etcd endpoint given: set --etcd or COORDINATOR_ETCD_ENDPOINTS")
    if len({e.tls for e in endpoints}) > 1:
        # A client moves to the next endpoint on failure: the plain one would get the credentials and the data in
        # clear, silently, whenever a TLS member is down.
        plain = ", ".join(f"{e.host}:{e.port}" for e in endpoints if not e.tls)
        raise ConfigError(f"etcd endpoints {text!r} mix https:// and http:// ({plain} without TLS): use https:// for "
                          "every endpoint (or http:// for all of them in a local test set-up)")  # fmt: skip
    return endpoints


def plaintext_credentials(settings: EtcdSettings) -> bool:
    """True when a username and password would travel to a non-loopback endpoint over plain http (the etcd
    Authenticate call and the token it returns are then readable on the network)."""
    loopback = ("127.", "localhost", "::1", "[::1]")
    return settings.username is not None and any(
        not e.tls and not e.host.startswith(loopback) for e in settings.endpoints
    )


@dataclass(frozen=True)
class ListenAddress:
    """Where the watcher's HTTP listener binds (``--http HOST:PORT``; port 0 picks a free one)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress | None:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a ListenAddress, ``off`` as None; ValueError naming what is wrong."""
    raw = text.strip()
    if raw.lower() == "off":
        return None
    host, sep, port = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid --http / COORDINATOR_HTTP {text!r}: expected HOST:PORT (e.g. 0.0.0.0:9465) or off")
    return ListenAddress(host, int(port))


class EtcdSettings(BaseModel):
    """How to reach etcd."""

    endpoints: list[Endpoint]
    username: str | None = None
    password: SecretStr | None = None
    #: The file ``password`` was read from, if any: read again at every authentication (a rotated Secret is used at the
    #: next log-in, without a restart).
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The same TLS material as PEM bytes, for sources that hold text instead of files (the plugin's Airflow connection,
    # whose secrets backend returns strings): a file, when both are set, wins (:func:`coordinator.etcd.wire.read_tls`).
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: SecretBytes | None = None
    # 5 s: long enough for a loaded etcd's fsync stalls, short enough that a dead endpoint is noticed quickly.
    timeout_s: float = 5.0


class InstanceSettings(BaseModel):
    """Where one Airflow instance named in dependencies.json lives, and how to log in. Per deployment stage."""

    url: str
    username: str | None = None
    password: SecretStr | None = None
    #: The file ``password`` was read from, if any: read again at every login (a corrected file or a rotated
    #: Kubernetes Secret is used without a restart; ``coordinator.airflow.auth``'s **Secret files read again**).
    password_file: Path | None = None
    # "auto" asks /api/v2/version first (Airflow 3), then /api/v1/version (Airflow 2), with the credentials below.
    api: str = Field(default="auto", pattern="^(auto|v1|v2)$")
    #: The watcher's calls in flight to this instance at once (None: COORDINATOR_AIRFLOW_MAX_CALLS).
    max_calls: int | None = Field(default=None, ge=1)
    #: Where the username and password come from, in words an operator can act on (the settings' names, never their
    #: values): a refused login names it as the thing to fix.
    credentials_from: str = ""
    # How requests authenticate (coordinator.runtime.instance_auth); password uses username/password above.
    auth: AuthConfig = PasswordAuth()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid Airflow URL {value!r}: expected http(s)://host[:port][/path]")
        return value.rstrip("/")


class Settings(BaseSettings):
    """Everything a coordinator command may need. Environment: ``COORDINATOR_*``."""

    model_config = SettingsConfigDict(env_prefix="COORDINATOR_", extra="ignore", populate_by_name=True)

    # Comma-separated http(s)://host:port of the etcd members (all https, or all http in a local set-up).
    etcd_endpoints: str = "http://127.0.0.1:2379"
    # The etcd user (etcd auth enabled; `coordinator roles` prints the roles each component needs).
    etcd_username: str | None = None
    # Its password, from the environment: prefer COORDINATOR_ETCD_PASSWORD_FILE (never in an environment dump).
    etcd_password: SecretStr | None = None
    # A file holding the etcd password (trailing newline stripped), e.g. a mounted Kubernetes Secret; wins over
    # COORDINATOR_ETCD_PASSWORD. Read at start (an unreadable file stops the command) and again at every log-in to etcd
    # (at connect, and whenever etcd forgot the session token), so a rotated Secret is used without a restart.
    etcd_password_file: Path | None = None
    # PEM file of the CA that signed etcd's server certificate (https:// endpoints). Read when the connection opens, so
    # a rotated CA takes a restart of the process.
    etcd_ca_file: Path | None = None
    # PEM client certificate for etcd's mutual TLS (with COORDINATOR_ETCD_KEY_FILE); read when the connection opens, so
    # a renewed certificate takes a restart of the process.
    etcd_cert_file: Path | None = None
    # PEM private key of COORDINATOR_ETCD_CERT_FILE; read when the connection opens, like the certificate.
    etcd_key_file: Path | None = None
    # 5 s per etcd request: long enough for a loaded etcd's fsync stalls, short enough that a dead endpoint is noticed.
    etcd_timeout_s: float = 5.0

    prefix: str = DEFAULT_PREFIX
    deps: Path = Path("dependencies.json")

    # Single-instance shorthand: the Airflow of the instance named "default" (its api-server, e.g.
    # http://airflow-api-server:8080: the shorthand graph's, and every DAG dependencies.json does not place elsewhere);
    # the chart's airflow.url. It and the instances file are alternatives that may be combined: every instance the
    # graph's DAGs (or asset routes) live in needs one of them, or the watcher is not ready (/readyz 503
    # instances_missing) and doctor fails naming the instance.
    airflow_url: str | None = None
    # The Airflow user the watcher logs in as (Airflow 3: POST /auth/token; Airflow 2: HTTP basic).
    airflow_username: str | None = None
    # Its password, from the environment: prefer COORDINATOR_AIRFLOW_PASSWORD_FILE.
    airflow_password: SecretStr | None = None
    # A file holding the Airflow password (trailing newline stripped), e.g. a mounted Kubernetes Secret; wins over
    # COORDINATOR_AIRFLOW_PASSWORD. Read at start (an unreadable file stops the command), then again at every login and
    # compared once a minute: a corrected file or a rotated Secret is used at the next try, without a restart. While
    # Airflow refuses the password, its calls wait behind one backoff (COORDINATOR_AIRFLOW_REFUSED_BACKOFF_S).
    airflow_password_file: Path | None = None
    # The REST API of that Airflow: "auto" asks /api/v2/version first (Airflow 3), then /api/v1/version (Airflow 2);
    # "v1" or "v2" skips the question.
    airflow_api: str = "auto"
    # Several instances: a JSON file {"team_a": {"url": ..., "username": ..., "password_env": ..., "password_file":
    # ...}}; one file per deployment stage, like the URL registries of multi-environment setups; the chart renders it
    # from airflow.instances. Its entries are named as dependencies.json names the instances ("default" too, instead
    # of COORDINATOR_AIRFLOW_URL): an instance of the graph without an entry keeps the watcher not ready. The file
    # itself is read at start: a changed file takes a restart (the chart's checksum annotation rolls the pods); the
    # password_file and auth.token_file it names are read again at every login (and compared once a minute), like
    # COORDINATOR_AIRFLOW_PASSWORD_FILE.
    instances_file: Path | None = None

    # 10 s: a standby takes over within TTL + 2 s of a leader's death; shorter TTLs risk flapping on a slow etcd.
    leader_ttl_s: int = 10
    # Identity written into the leader key and ledger entries; defaults to host:pid.
    watcher_id: str | None = None
    # 60 s: a periodic full reconcile even without events, so anything missed by a bug is picked up.
    resync_interval_s: float = 60.0
    # The cap of each refused intent's backoff (400, 404 DAG missing, 403): 1, 2, 4 ... s up to 30 s per (DAG,
    # partition), never a busy loop (core/error_backoff.py); about three requests a minute for a DAG that stays refused.
    error_retry_s: float = 30.0
    # 10 s per HTTP request to Airflow: a hung API must not stall a partition for long.
    airflow_timeout_s: float = 10.0
    # An instance that refuses our credentials (a login refused, a 401, a 403 to a credential it never accepted) or
    # answers 429 with Retry-After holds back ALL its calls behind one backoff: the first step 5 s, doubling up to 300 s
    # (coordinator.airflow.gate says why these numbers). N pending triggers then make one login per step, not N per
    # second; the intents wait in the ledger and run once Airflow accepts; password and token files are read again at
    # every try, so a corrected file is used within one step, without a restart.
    airflow_refused_backoff_s: float = Field(default=5.0, gt=0)
    # The cap of that backoff: 5 minutes, client-go's order for a failing item and well inside the quarter hour over
    # which LDAP/IdP lockout policies count failures; a corrected password is used within one step of at most this.
    airflow_refused_backoff_max_s: float = Field(default=300.0, gt=0)
    # How many trigger and clear attempts may be in flight at once, across partitions and instances (each makes its
    # Airflow calls one after another; COORDINATOR_AIRFLOW_MAX_CALLS bounds those per instance).
    max_concurrent_actions: int = 16
    # How many Airflow calls may go to one instance at once (its "max_calls" in the instances file overrides it).
    # Each holds one of the api-server's database connections while it runs, from the pool its tasks' own calls need
    # too (5 plus 10 overflow per api-server process at Airflow's defaults): 16 at once starved them, 8 did not.
    airflow_max_calls: int = Field(default=8, ge=1)
    # Audit of Airflow's recent runs over REST (repairs states the plugin could not write). 0 disables it.
    audit_interval_s: float = 60.0
    # Semantics `checkpoint-first`: at most every 30 s the leader records the revision its trigger work is settled
    # through (``{prefix}/config/checkpoint``), so a restart plans first what changed after it; 0 turns the job off.
    checkpoint_interval_s: float = Field(default=30.0, ge=0)
    # At most 15 s between the leader's deadline passes (semantics `deadlines-judged`): a pass also follows a change
    # within a second and the clock's next instant; paused DAGs and unreachable instances are asked at least this often.
    deadline_interval_s: float = Field(default=15.0, gt=0)
    # How far back the audit looks.
    audit_lookback_h: float = 48.0
    # Semantics `flap-held`: a run-state key whose success comes back to a run's attempt it already recorded, after
    # another run's, within this window, is held (its dependents wait until `coordinator release-flap`). An hour holds
    # an alternation as fast as the audit's (one a minute) after its third success, and the leader remembers only the
    # keys that succeeded within it; no Airflow action makes one attempt succeed twice, so a longer one only costs
    # memory.
    flap_window_s: float = Field(default=3600.0, gt=0)
    # Semantics `assets-by-route`, `asset-exactly-once` (assets shared across deployments, only when dependencies.json
    # has "assets" routes): 2 s between the leader's asset rounds, so an event reaches the other deployment within a
    # scheduler loop or two (each round is one events listing per source instance); 0 disables sharing.
    asset_interval_s: float = Field(default=2.0, ge=0)
    # When no event of a source instance was ever recorded, the first round starts this far back (0: from the
    # watcher's start): a new route does not replay an asset's whole history into the other deployment.
    asset_lookback_s: float = Field(default=0.0, ge=0)
    # What the FIRST adoption of a graph under this prefix does with the run states already in etcd
    # (semantics `first-adoption`): "auto" processes them unless that would trigger more than first_start_limit runs at
    # once; "all"; "none" (only new successes; backfill the rest per DAG); or a logical date (partitions at or after
    # it).
    adopt_history: str = "auto"
    # 100 runs (see coordinator.core.adoption.DEFAULT_FIRST_START_LIMIT): a late first start finds the roots' last
    # few runs; more means months of history, which would queue that many runs on Airflow at once.
    first_start_limit: int = Field(default=DEFAULT_FIRST_START_LIMIT, ge=0)
    # The instance-wide ceiling: at most this many new runs per Airflow instance within trigger_budget_window_s,
    # beyond which the leader holds that whole instance until `coordinator release` (semantics `trigger-budget`;
    # coordinator.core.budget says why 1,000 in 10 minutes). 0 disables the whole budget, per-DAG holds included.
    trigger_budget: int = Field(default=DEFAULT_TRIGGER_BUDGET, ge=0)
    # The window of the trigger budget, in seconds: the new runs of the last 10 minutes count against it.
    trigger_budget_window_s: float = Field(default=DEFAULT_TRIGGER_BUDGET_WINDOW_S, gt=0)
    # Each DAG may start max(this, 2 x what its grids explain) new runs in the window before the budget stops that DAG
    # alone (semantics `budget-per-dag`; coordinator.core.budget_allowance says why 40). 0 turns the per-DAG stop off.
    trigger_budget_dag_floor: int = Field(default=DEFAULT_DAG_ALLOWANCE_FLOOR, ge=0)
    # How long the watcher may take to load its view before /healthz fails (coordinator.runtime.health's **Alive**);
    # /readyz is not ready until the view is loaded, whatever this is.
    start_timeout_s: float = Field(default=DEFAULT_START_TIMEOUT_S, gt=0)
    # The dependencies page draws the DAGs of other Airflow instances only when shared here: this Airflow's auth
    # manager cannot say who may read them ("hidden": counted, not drawn).
    page_other_instances: str = Field(default="hidden", pattern="^(hidden|shown)$")
    # The watcher's HTTP listener (/metrics, /healthz, /readyz): HOST:PORT or "off". Loopback by default, so metrics
    # (they name instances) are not reachable from other hosts unless asked for (0.0.0.0:9465 in a pod); 9465 is in
    # the range Prometheus exporters use and clashes with none of the common ones.
    http: str = "127.0.0.1:9465"

    @field_validator("http")
    @classmethod
    def _http(cls, value: str) -> str:
        parse_listen(value)  # raises ValueError with a clear message
        return value

    @property
    def http_address(self) -> ListenAddress | None:
        return parse_listen(self.http)

    # Retention on the leader (semantics `retention-retires`): "off" (the default: deleting history is the operator's
    # decision) or a duration such as 90d; the leader prunes each partition as soon as it is older than that.
    retention: str = "off"
    # The longest a partition's retention key waits: a partition kept (a run still running, an unfinished intent) is
    # looked at again after it, a partition not old enough yet at least this often (a clock that jumps delays a prune
    # by one interval at most), a failure is retried no later, and the first sweep of every partition comes this long
    # after the start. 1 h: a partition becomes due at its own time, not at the next tick,
    # so the interval only paces rechecks (each reads the view, no etcd) and a new leader's first sweep.
    retention_interval_s: float = Field(default=3600.0, gt=0)

    @field_validator("adopt_history")
    @classmethod
    def _adopt_history(cls, value: str) -> str:
        HistoryChoice.parse(value)  # raises ValueError with a clear message
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        if value.strip().lower() != "off":
            parse_duration(value)  # raises ValueError with a clear message
        return value

    @property
    def retention_period(self) -> timedelta | None:
        """The periodic retention's age limit; None when off."""
        return None if self.retention.strip().lower() == "off" else parse_duration(self.retention)

    @property
    def history_choice(self) -> HistoryChoice:
        return HistoryChoice.parse(self.adopt_history)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        KeyLayout(value)  # raises ValueError with a clear message
        return value

    @property
    def keys(self) -> KeyLayout:
        return KeyLayout(self.prefix)

    def etcd(self) -> EtcdSettings:
        """The etcd connection settings, with the password read from its file if one is named."""
        return EtcdSettings(
            endpoints=parse_endpoints(self.etcd_endpoints),
            username=self.etcd_username,
            password=read_secret(self.etcd_password, self.etcd_password_file, "etcd password"),
            password_file=self.etcd_password_file,
            ca_file=self.etcd_ca_file,
            cert_file=self.etcd_cert_file,
            key_file=self.etcd_key_file,
            timeout_s=self.etcd_timeout_s,
        )

    def instances(self) -> dict[str, InstanceSettings]:
        """Instance name -> how to reach it. The single-instance flags define ``default``."""
        result: dict[str, InstanceSettings] = {}
        if self.instances_file is not None:
            result.update(load_instances_file(self.instances_file))
        if self.airflow_url:
            try:
                result[DEFAULT_INSTANCE] = InstanceSettings(
                    url=self.airflow_url,
                    username=self.airflow_username,
                    password=read_secret(self.airflow_password, self.airflow_password_file, "Airflow password"),
                    password_file=self.airflow_password_file,
                    api=self.airflow_api,
                    credentials_from=DEFAULT_CREDENTIALS,
                )
            except ValidationError as exc:
                raise ConfigError(f"COORDINATOR_AIRFLOW_URL: {exc.errors()[0]['msg']}") from exc
        return result


def load_instances_file(path: Path) -> dict[str, InstanceSettings]:
    """Load the instances file; credentials are referenced by environment variable or file, never inlined."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read instances file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object mapping instance names to settings")
    result: dict[str, InstanceSettings] = {}
    allowed = {"url", "username", "username_env", "password_env", "password_file", "api", "auth", "max_calls"}
    for name, entry in data.items():
        where = f"{path}: $.{name}"
        if not NAME_RE.match(name):
            raise ConfigError(f"{where}: invalid instance name (letters, digits, '_', '.', '-')")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object with at least 'url'")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        if "password" in entry:  # pragma: no cover - rejected above as unknown; kept for the explicit message
            raise ConfigError(f"{where}: inline passwords are not allowed; use password_env or password_file")
        username = entry.get("username")
        if entry.get("username_env"):
            username = os.environ.get(entry["username_env"], username)
        password: SecretStr | None = None
        password_file: Path | None = None
        if entry.get("password_env"):
            env_value = os.environ.get(entry["password_env"])
            if env_value is None:
                raise ConfigError(f"{where}: environment variable {entry['password_env']} is not set")
            password = SecretStr(env_value)
        if entry.get("password_file"):
            password_file = Path(entry["password_file"])
            password = read_secret(None, password_file, f"password of instance {name}")
        max_calls = entry.get("max_calls")
        if max_calls is not None and (type(max_calls) is not int or max_calls < 1):
            raise ConfigError(f"{where}.max_calls: expected a whole number of calls, at least 1 (got {max_calls!r})")
        has_login = any(entry.get(k) for k in ("username", "username_env", "password_env", "password_file"))
        auth = parse_auth(entry.get("auth"), where, has_username=has_login)
        try:
            result[name] = InstanceSettings(
                url=entry.get("url", ""), username=username, password=password, password_file=password_file,
                api=entry.get("api", "auto"), max_calls=max_calls,
                credentials_from=f"the fields username/username_env and password_env/password_file of {name!r} in "
                f"{path}", auth=auth,
            )  # fmt: skip
        except ValidationError as exc:
            raise ConfigError(f"{where}: {exc.errors()[0]['msg']}") from exc
    return result
