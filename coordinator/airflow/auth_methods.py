"""The auth methods that need no optional library: ``password``, ``bearer``, ``exec`` and ``none``.

Each is a small class behind :class:`coordinator.airflow.auth.AuthMethod`; the shared refresh and the failure
counting live in :class:`coordinator.airflow.auth.Authenticator`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from coordinator.airflow.auth import AuthMethod, Credential, Exchange, bearer
from coordinator.airflow.runs import ApiVersion
from coordinator.errors import AirflowAuthError, AirflowError
from coordinator.runtime.instance_auth import BearerAuth, ExecAuth, GoogleAuth, MwaaAuth, NoAuth, PasswordAuth
from coordinator.runtime.redact import redact_text
from coordinator.runtime.settings import InstanceSettings

log = logging.getLogger(__name__)

#: Characters of a failing exec command's stderr kept in the error: its last lines say why.
STDERR_MAX = 300


def _auth_error(instance: str, method: str, text: str, status: int = 0) -> AirflowAuthError:
    return AirflowAuthError(f"{instance}: {method} auth: {text}", status)


class PasswordMethod:
    """Airflow's own users: a JWT from ``/auth/token`` on v2 (renewed by logging in again), HTTP basic on v1.

    Without username/password it asks ``GET /auth/token``: Airflow's simple auth manager hands out a token without
    credentials when ``simple_auth_manager_all_admins`` is on (local and demo set-ups) and answers 403 otherwise.

    A password from a file is read again at every login (``auth``'s **Secret files read again**): a corrected file or
    a rotated Kubernetes Secret is used from the next try on, without a restart.
    """

    name = "password"
    depends_on_api = True

    def __init__(
        self,
        instance: str,
        username: str | None,
        password: SecretStr | None,
        credentials_from: str = "",
        password_file: Path | None = None,
    ) -> None:
        self._instance = instance
        self._username = username
        self._password = password
        self._file = password_file
        #: Where username and password come from (setting names, never values): a refused login names the fix.
        self._credentials_from = credentials_from

    async def _read_password(self) -> None:
        """The password as its file holds it now (trailing newline stripped, as at start); the last one read if the
        file cannot be read now (a Secret being swapped by kubelet), which the login then tries."""
        if self._file is None:
            return
        try:
            text = await asyncio.to_thread(self._file.read_text, encoding="utf-8")
        except OSError as exc:
            log.warning("airflow.secret_unreadable instance=%s file=%s error=%s", self._instance, self._file,
                        exc.strerror)  # fmt: skip
            return
        self._password = SecretStr(text.rstrip("\r\n"))

    def refreshable(self, api: ApiVersion | None) -> bool:
        return api is ApiVersion.V2  # basic auth has nothing to refresh

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        await self._read_password()
        if api is not ApiVersion.V2:
            if self._username is None or self._password is None:
                return Credential({})
            secret = self._password.get_secret_value()
            basic = base64.b64encode(f"{self._username}:{secret}".encode()).decode()
            return Credential({"Authorization": f"Basic {basic}"}, secrets=(secret, basic))
        path = "/auth/token"
        if self._username is None or self._password is None:
            method, who = "GET", "no username/password configured and anonymous tokens are off"
            resp = await exchange.request(method, path)
        else:
            method, who = "POST", f"login refused for user {self._username!r}"
            body = {"username": self._username, "password": self._password.get_secret_value()}
            resp = await exchange.request(method, path, json=body)
        if resp.status_code in (200, 201):
            token = _json_field(resp, "access_token")
            if token is None:
                raise AirflowError(f"{self._instance}: {method} {path}: unexpected response: no access_token", 200)
            credential = bearer(token)
            secrets = (*credential.secrets, self._password.get_secret_value()) if self._password else credential.secrets
            return Credential(credential.headers, credential.expires_at, secrets)
        if resp.status_code >= 500 or resp.status_code == 429:
            raise exchange.error(method, path, resp)
        # No response body here: a validation error would echo the submitted password back.
        cls = AirflowAuthError if resp.status_code in (401, 403) else AirflowError
        fix = f"; check {self._credentials_from}" if self._credentials_from and cls is AirflowAuthError else ""
        raise cls(f"{self._instance}: {method} {path} -> {resp.status_code}: {who}{fix}", resp.status_code)


class BearerMethod:
    """A static token from the environment (fixed for the process) or a file (re-read on every refresh).

    Rotation without a restart: write the new token to the file; the first request the old one fails re-reads it.
    """

    name = "bearer"
    depends_on_api = False

    def __init__(self, instance: str, token: SecretStr | None, token_file: Path | None) -> None:
        self._instance = instance
        self._token = token
        self._file = token_file

    def refreshable(self, api: ApiVersion | None) -> bool:
        return self._file is not None

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        if self._file is None:
            assert self._token is not None  # instance_auth guarantees one of the two
            return bearer(self._token.get_secret_value())
        try:
            token = (await asyncio.to_thread(self._file.read_text, encoding="utf-8")).strip()
        except OSError as exc:
            raise _auth_error(
                self._instance, self.name, f"cannot read token file {self._file}: {exc.strerror}"
            ) from exc
        if not token:
            raise _auth_error(self._instance, self.name, f"token file {self._file} is empty")
        return bearer(token)


class ExecMethod:
    """A command prints the token: plain text, or JSON ``{"token": ..., "expires_at": ISO 8601}``.

    Run again shortly before ``expires_at`` or after a 401/403; never through a shell; killed after ``timeout_s``.
    """

    name = "exec"
    depends_on_api = False

    def __init__(self, instance: str, command: tuple[str, ...], timeout_s: float) -> None:
        self._instance = instance
        self._command = command
        self._timeout_s = timeout_s

    def refreshable(self, api: ApiVersion | None) -> bool:
        return True

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        program = self._command[0]
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise self._error(f"cannot run {program!r}: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(self._timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise self._error(f"{program!r} did not finish within {self._timeout_s:g} s (killed)") from None
        if proc.returncode != 0:
            # Another program's words: it may echo a token or a secret
            # it was given (``coordinator.runtime.redact``'s **Credentials masked in text**).
            tail = redact_text(" ".join(err.decode(errors="replace").split()))[-STDERR_MAX:] or "no stderr"
            raise self._error(f"{program!r} exited with status {proc.returncode}: {tail}")
        return self._parse(out.decode(errors="replace").strip())

    def _parse(self, text: str) -> Credential:
        if not text:
            raise self._error(f"{self._command[0]!r} printed nothing (expected a token or JSON with 'token')")
        if not text.startswith("{"):
            return bearer(text.splitlines()[0].strip())
        try:
            data: Any = json.loads(text)
        except ValueError:
            raise self._error(f"{self._command[0]!r} printed invalid JSON") from None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise self._error(f"{self._command[0]!r} printed JSON without a 'token' string")
        credential = bearer(token)
        expires = data.get("expires_at")
        if expires is None:
            return credential
        try:
            moment = datetime.fromisoformat(str(expires))
        except ValueError:
            raise self._error(f"{self._command[0]!r} printed an expires_at that is not ISO 8601") from None
        if moment.tzinfo is None:
            raise self._error(f"{self._command[0]!r} printed an expires_at without a timezone (add Z or +00:00)")
        return Credential(credential.headers, moment.timestamp(), credential.secrets)

    def _error(self, text: str) -> AirflowAuthError:
        return _auth_error(self._instance, self.name, text)


class NoMethod:
    """No credentials: requests go out as they are."""

    name = "none"
    depends_on_api = False

    def refreshable(self, api: ApiVersion | None) -> bool:
        return False

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        return Credential({})


def _json_field(resp: Any, key: str) -> str | None:
    try:
        data = resp.json()
    except ValueError:
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def method_for(instance: str, settings: InstanceSettings, timeout_s: float) -> AuthMethod:
    """The method an instance's settings name. google and aws_mwaa import their optional library only here."""
    auth = settings.auth
    if isinstance(auth, BearerAuth):
        return BearerMethod(instance, auth.token, auth.token_file)
    if isinstance(auth, ExecAuth):
        return ExecMethod(instance, auth.command, auth.timeout_s)
    if isinstance(auth, GoogleAuth):
        from coordinator.airflow.auth_google import GoogleMethod

        return GoogleMethod(instance, timeout_s)
    if isinstance(auth, MwaaAuth):
        from coordinator.airflow.auth_mwaa import MwaaMethod

        return MwaaMethod(instance, auth.environment, auth.region, timeout_s)
    if isinstance(auth, NoAuth):
        return NoMethod()
    return PasswordMethod(
        instance, settings.username, settings.password, settings.credentials_from, settings.password_file
    )


def secret_files(settings: InstanceSettings) -> tuple[Path, ...]:
    """The files an instance's credential is made from (``auth``'s **Secret files read again**)."""
    auth = settings.auth
    if isinstance(auth, BearerAuth):
        return (auth.token_file,) if auth.token_file is not None else ()
    if isinstance(auth, PasswordAuth) and settings.password_file is not None:
        return (settings.password_file,)
    return ()
