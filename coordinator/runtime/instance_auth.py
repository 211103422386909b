"""How the watcher authenticates to one Airflow instance: the ``auth`` object of an instances-file entry.

Methods (``method``; the Airflow adapter, :mod:`coordinator.airflow.auth`, implements each):

- ``password``: the entry's ``username`` / ``password_env`` / ``password_file`` (today's fields, unchanged): a JWT
  from ``POST /auth/token`` on Airflow 3, HTTP basic on Airflow 2. The default when no ``auth`` object is given.
- ``bearer``: a static token from ``token_env`` or ``token_file`` (exactly one); the file is re-read after a 401/403.
- ``exec``: ``command`` (a list of strings, no shell) prints a token, or JSON ``{"token": ..., "expires_at": ISO}``.
- ``google``: Google's application default credentials (google-auth, extra ``[google]``), scope cloud-platform.
- ``aws_mwaa``: ``environment`` and ``region`` (boto3, extra ``[aws]``): a web login token exchanged at the
  instance's ``url`` + ``/aws_mwaa/login`` for the web server's session cookie.
- ``none``: no credentials at all.

Rules:
- **Problems named, at load.** Every problem is a ConfigError naming the file, the instance and the field (exit 2 in
  every command), found when the file is loaded, not at the first request: unknown method or field, a missing field,
  both ``token_env`` and ``token_file``, an unset variable, an unreadable file, a method whose optional library is not
  installed (the message gives the pip command).
- **No inline secrets.** Secrets are never inlined in the file: tokens come from the environment or a file; the token
  value of ``token_env`` is held as SecretStr.
- **No optional import.** No optional library is imported here (``importlib.util.find_spec`` only asks whether it is
  installed): importing google-auth or boto3 is the Airflow adapter's business (an import-linter contract).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from coordinator.errors import ConfigError

#: The package name users install, for the "install the extra" messages.
DIST = "airflow-etcd-coordinator"
#: 30 s for an exec command: a CLI that fetches a token over the network (cloud CLIs, vault) answers within seconds;
#: longer means it hangs (waiting for a browser login, say), and the request it serves has its own 10 s timeout.
EXEC_TIMEOUT_S = 30.0


class _Auth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PasswordAuth(_Auth):
    """The entry's username and password (``POST /auth/token`` on Airflow 3, HTTP basic on Airflow 2)."""

    method: Literal["password"] = "password"


class BearerAuth(_Auth):
    """A static API token (Astronomer deployment tokens, Airflow 3 UI tokens): ``token`` XOR ``token_file``."""

    method: Literal["bearer"] = "bearer"
    token: SecretStr | None = None  # read from token_env when the file is loaded
    token_env: str | None = None
    token_file: Path | None = None


class ExecAuth(_Auth):
    """A command that prints a token (plain, or JSON with ``token`` and ``expires_at``)."""

    method: Literal["exec"] = "exec"
    command: tuple[str, ...]
    timeout_s: float = Field(default=EXEC_TIMEOUT_S, gt=0)


class GoogleAuth(_Auth):
    """Google application default credentials (Cloud Composer 2 and 3)."""

    method: Literal["google"] = "google"


class MwaaAuth(_Auth):
    """An Amazon MWAA environment's web login token, exchanged for the web server's session."""

    method: Literal["aws_mwaa"] = "aws_mwaa"
    environment: str
    region: str


class NoAuth(_Auth):
    """No credentials (an Airflow behind a trusted network front that authenticates for it)."""

    method: Literal["none"] = "none"


AuthConfig = Annotated[
    PasswordAuth | BearerAuth | ExecAuth | GoogleAuth | MwaaAuth | NoAuth, Field(discriminator="method")
]

#: Fields each method takes in the ``auth`` object (besides ``method``), required ones first.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "password": ((), ()),
    "bearer": ((), ("token_env", "token_file")),
    "exec": (("command",), ("timeout_s",)),
    "google": ((), ()),
    "aws_mwaa": (("environment", "region"), ()),
    "none": ((), ()),
}
#: The optional library each method needs: (module to look for, its distribution, the extra that installs it).
_EXTRAS = {"google": ("google.auth", "google-auth", "google"), "aws_mwaa": ("boto3", "boto3", "aws")}


def parse_auth(raw: object, where: str, *, has_username: bool) -> AuthConfig:
    """The ``auth`` object of one instance entry (``where`` names it for messages, e.g. ``file: $.team_a``)."""
    if raw is None:
        return PasswordAuth()
    at = f"{where}.auth"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}: expected an object with a 'method' ({', '.join(_FIELDS)})")
    method = raw.get("method")
    if not isinstance(method, str) or method not in _FIELDS:
        got = "missing" if method is None else repr(method)
        raise ConfigError(f"{at}.method: {got}; expected one of {', '.join(_FIELDS)}")
    required, optional = _FIELDS[method]
    unknown = sorted(set(raw) - {"method", *required, *optional})
    if unknown:
        allowed = ", ".join((*required, *optional)) or "none besides 'method'"
        raise ConfigError(f"{at}: unknown field(s) {', '.join(unknown)} for method {method}; allowed: {allowed}")
    for name in required:
        if name not in raw:
            raise ConfigError(f"{at}.{name}: missing (method {method} needs {', '.join(required)})")
    if has_username and method != "password":
        raise ConfigError(
            f"{where}: username/password fields belong to method password, not {method}; remove them or the auth"
        )
    _need_extra(method, at)
    try:
        return _build(method, raw, at)
    except ConfigError:
        raise
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{at}.{field}: {first['msg']}") from exc
        raise ConfigError(f"{at}: {exc}") from exc


def _build(method: str, raw: dict[str, Any], at: str) -> AuthConfig:
    if method == "bearer":
        env, file = raw.get("token_env"), raw.get("token_file")
        if (env is None) == (file is None):
            raise ConfigError(f"{at}: method bearer needs exactly one of token_env or token_file, not {_both(env)}")
        if env is not None:
            if not isinstance(env, str) or not env:
                raise ConfigError(f"{at}.token_env: expected the name of an environment variable")
            value = os.environ.get(env)
            if not value:
                raise ConfigError(f"{at}.token_env: environment variable {env} is not set (or empty)")
            return BearerAuth(token=SecretStr(value.strip()), token_env=env)
        if not isinstance(file, str) or not file:
            raise ConfigError(f"{at}.token_file: expected a file path")
        path = Path(file)
        if not os.access(path, os.R_OK) or not path.is_file():
            raise ConfigError(f"{at}.token_file: cannot read {path} (missing, not a file, or no permission)")
        return BearerAuth(token_file=path)
    if method == "exec":
        command = raw["command"]
        if not isinstance(command, list) or not command or not all(isinstance(c, str) and c for c in command):
            raise ConfigError(f'{at}.command: expected a non-empty list of strings, e.g. ["get-token", "--json"]')
        return ExecAuth(command=tuple(command), timeout_s=raw.get("timeout_s", EXEC_TIMEOUT_S))
    if method == "aws_mwaa":
        for name in ("environment", "region"):
            if not isinstance(raw[name], str) or not raw[name].strip():
                raise ConfigError(f"{at}.{name}: expected a non-empty string")
        return MwaaAuth(environment=raw["environment"], region=raw["region"])
    if method == "google":
        return GoogleAuth()
    if method == "none":
        return NoAuth()
    return PasswordAuth()


def _both(env: object) -> str:
    return "neither" if env is None else "both"


def _need_extra(method: str, at: str) -> None:
    """**Problems named, at load** and **No optional import**: a method whose library is missing fails at load time with
    the install command."""
    if method not in _EXTRAS:
        return
    module, dist, extra = _EXTRAS[method]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package (google) is missing too
        found = False
    if not found:
        raise ConfigError(
            f"{at}.method: {method} needs the optional library {dist}, which is not installed; install it with: "
            f"pip install '{DIST}[{extra}]'"
        )
