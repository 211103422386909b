"""Per-instance authentication: one protocol for every method, and the one shared refresh.

Each method (:mod:`coordinator.airflow.auth_methods`, :mod:`coordinator.airflow.auth_cloud`) answers two questions
behind :class:`AuthMethod`: "which headers does a request carry" (:meth:`AuthMethod.obtain` returns a
:class:`Credential`) and "can a 401/403 be cured by asking again" (:meth:`AuthMethod.refreshable`). The
:class:`Authenticator` around it owns everything the methods share.

Rules:
- **Renewed before expiry.** A credential is obtained lazily, before the first request that needs it, and again shortly
  before its ``expires_at`` (EXPIRY_MARGIN_S, at most a quarter of its lifetime), so a request rarely meets an expired
  token. If that early renewal fails, the old credential serves until it really expires.
- **One shared refresh.** A 401/403 leads to exactly one refresh and one retry of that request. Refreshes are shared:
  each credential has a generation, a request remembers the generation it sent, and a refresh for a generation that was
  already replaced does nothing (the request just retries with the newer credential). Concurrent 401s therefore cause
  ONE login, not one each. A method that cannot refresh (a token from the environment, HTTP basic, ``none``) makes a
  401/403 final.
- **Secret files read again.** A method whose secret is a file (a password or token file: ``secret_files``) reads it
  at every login. A refusal drops the credential (:meth:`Authenticator.invalidate`, the client's backoff), so the next
  try reads the file again; and at most every SECRET_REREAD_S the files are compared with what the credential was made
  from: changed, the credential is renewed early (a rotated Kubernetes Secret is used before the old one is revoked).
- **One failed login for all.** Requests that waited for a login that failed share its failure instead of each trying
  again: N concurrent requests with a wrong password make one login attempt.
- **Failures named and counted.** A credential that cannot be obtained, or a fresh one Airflow still refuses, is an
  error naming the instance and the method (AirflowAuthError; AirflowUnavailable when the token service could not be
  reached) and is counted through ``on_failure(instance, method)`` (the metric
  ``coordinator_airflow_auth_failures_total``). The watcher records it on the ledger like any Airflow refusal
  (``status`` shows it), and keeps serving: readiness is about etcd.
- **Secrets never shown.** No token, password or cookie value ever reaches a log line or an error message:
  :meth:`Authenticator.redact` scrubs every secret of the current and the previous credential from any text the client
  reports.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from coordinator.airflow.runs import ApiVersion
from coordinator.errors import AirflowError

log = logging.getLogger(__name__)

#: Renew this long before a credential's expiry: more than a request's timeout (10 s) plus clock skew between hosts,
#: so a token never expires on the wire; capped at a quarter of the lifetime for short-lived tokens (seconds).
EXPIRY_MARGIN_S = 30.0
#: **Secret files read again**: how often the files behind a credential are compared with what it was made from.
#: client-go re-reads a token file once a minute; kubelet refreshes a mounted Secret within about a minute of its
#: change (its sync period plus the cache's TTL), so checking more often would only find the old content.
SECRET_REREAD_S = 60.0


@dataclass(frozen=True)
class Credential:
    """What requests carry: headers (``Authorization``, ``Cookie``), until ``expires_at`` (``time.time()``)."""

    headers: Mapping[str, str]
    expires_at: float | None = None
    #: Secret values to scrub from any text (**Secrets never shown**): the token, the password, cookie values.
    secrets: tuple[str, ...] = ()
    #: When it was obtained, for the renewal margin (**Renewed before expiry**).
    obtained_at: float = field(default_factory=time.time)

    def due(self, now: float) -> bool:
        """**Renewed before expiry**: time to renew."""
        if self.expires_at is None:
            return False
        margin = min(EXPIRY_MARGIN_S, max(0.0, self.expires_at - self.obtained_at) / 4)
        return now >= self.expires_at - margin


def bearer(token: str) -> Credential:
    """An ``Authorization: Bearer`` credential, expiring when its JWT says (None if it is no JWT): how every method
    that ends in a token (password, bearer, exec, google) hands it over."""
    return Credential({"Authorization": f"Bearer {token}"}, expires_at=jwt_expiry(token), secrets=(token,))


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified (only to renew it in time; the server verifies), or None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


@dataclass(frozen=True)
class Exchange:
    """What a method may send to the instance: the client's own request path (timeouts, metrics, error mapping),
    over the client's exchange and error-mapping functions."""

    send: Callable[..., Awaitable[httpx.Response]]
    map_error: Callable[[str, str, httpx.Response], AirflowError]

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One exchange without the instance's credentials; transport failures raise AirflowUnavailable."""
        return await self.send(method, path, headers=headers or {}, json=json, data=data)

    def error(self, method: str, path: str, resp: httpx.Response) -> AirflowError:
        """The client's status -> exception mapping for this answer."""
        return self.map_error(method, path, resp)


class AuthMethod(Protocol):
    """One way of authenticating (a small class per method)."""

    #: The method's name in the instances file and in the metric's label.
    name: str
    #: Whether the credential differs by API version (password: a JWT on v2, HTTP basic on v1).
    depends_on_api: bool

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        """A fresh credential for requests to ``api`` (None: the version probe, before the API is known).

        Raises AirflowAuthError (refused, misconfigured) or AirflowUnavailable (the token service is unreachable),
        with a message that starts with ``{instance}: {method} auth:`` and holds no secret.
        """
        ...

    def refreshable(self, api: ApiVersion | None) -> bool:
        """Whether asking again can cure a 401/403 (**One shared refresh**)."""
        ...


class Authenticator:
    """The credential of one instance, shared by all its concurrent requests; refreshes once per generation."""

    def __init__(
        self,
        method: AuthMethod,
        *,
        instance: str,
        on_failure: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        secret_files: Sequence[Path] = (),
    ) -> None:
        self.method = method
        self.instance = instance
        self._on_failure = on_failure or (lambda instance, method: None)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._credential: Credential | None = None
        self._api: ApiVersion | None = None
        self._generation = 0
        self._old_secrets: tuple[str, ...] = ()
        #: How many credentials were obtained (the first one and every refresh): tests count logins with it.
        self.obtained = 0
        #: **Secret files read again**: the files, the digest of their content when the credential was made, when they
        #: were last compared.
        self._files = tuple(secret_files)
        self._files_digest: str | None = None
        self._files_checked = 0.0
        #: **One failed login for all**: failed obtains so far, and the last one's error.
        self._failures = 0
        self._failure: AirflowError | None = None

    async def credential(self, api: ApiVersion | None, exchange: Exchange) -> tuple[int, Credential]:
        """The credential for a request to ``api`` and its generation (**Renewed before expiry**: obtained or renewed
        when due)."""
        current = self._credential
        stale = current is not None and await self._files_changed()
        if current is None or not self._fits(api) or current.due(self._clock()) or stale:
            try:
                await self._renew(self._generation, api, exchange, proactive=True, stale=stale)
            except AirflowError:
                # An early renewal that failed (counted and logged) still leaves a credential that has not expired:
                # use it while it lasts rather than fail a request that would have worked.
                if current is None or not self._fits(api) or self._clock() >= (current.expires_at or 0.0):
                    raise
                return self._generation, current
        assert self._credential is not None
        return self._generation, self._credential

    async def refresh(self, stale: int, api: ApiVersion | None, exchange: Exchange, status: int) -> bool:
        """After a 401/403 on a request sent with generation ``stale``: renew (once for all such requests).

        False when the method cannot refresh: the 401/403 is final (**One shared refresh**).
        """
        if not self.method.refreshable(api):
            return False
        log.info("airflow.auth_refresh instance=%s method=%s status=%s", self.instance, self.method.name, status)
        await self._renew(stale, api, exchange, proactive=False)
        return True

    def rejected(self) -> None:
        """A request ended in 401/403 although its credential was fresh or cannot be refreshed
        (**Failures named and counted**)."""
        self._on_failure(self.instance, self.method.name)

    def invalidate(self) -> None:
        """The instance refused us (the client's backoff): the next request obtains a new credential, reading its
        secret files again (**Secret files read again**)."""
        if self._credential is not None:
            self._old_secrets = self._credential.secrets
            self._credential = None

    async def _files_changed(self) -> bool:
        """**Secret files read again**: at most every SECRET_REREAD_S, whether the files differ from what the
        credential was made from (an unreadable file counts as unchanged: the login that reads it says why)."""
        if not self._files or self._files_digest is None or self._clock() - self._files_checked < SECRET_REREAD_S:
            return False
        self._files_checked = self._clock()
        digest = await asyncio.to_thread(_digest, self._files)
        if digest is None or digest == self._files_digest:
            return False
        log.info("airflow.secret_changed instance=%s method=%s", self.instance, self.method.name)
        return True

    def redact(self, text: str) -> str:
        """**Secrets never shown**."""
        secrets = (*(self._credential.secrets if self._credential else ()), *self._old_secrets)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _fits(self, api: ApiVersion | None) -> bool:
        return not self.method.depends_on_api or self._api is api

    async def _renew(
        self, seen: int, api: ApiVersion | None, exchange: Exchange, *, proactive: bool, stale: bool = False
    ) -> None:
        failures = self._failures
        async with self._lock:
            current = self._credential
            if current is not None and self._fits(api) and self._generation != seen:
                return  # another request renewed it while this one waited: share that one (**One shared refresh**)
            if self._failures != failures and self._failure is not None:
                # **One failed login for all**: the login this request waited for failed; its error, not another try.
                failure = self._failure
                raise type(failure)(str(failure), failure.status)
            if proactive and current is not None and self._fits(api) and not current.due(self._clock()) and not stale:
                return
            files = await asyncio.to_thread(_digest, self._files) if self._files else None
            self._files_checked = self._clock()
            try:
                fresh = await self.method.obtain(api, exchange)
            except AirflowError as exc:
                self._failures += 1
                self._failure = exc
                self._on_failure(self.instance, self.method.name)
                log.warning("airflow.auth_failed instance=%s method=%s error=%s", self.instance, self.method.name, exc)
                raise
            self._files_digest = files
            self._old_secrets = current.secrets if current is not None else ()
            self._credential, self._api = fresh, api
            self._generation += 1
            self.obtained += 1
            log.debug(
                "airflow.auth_obtained instance=%s method=%s expires_in=%s",
                self.instance,
                self.method.name,
                "-" if fresh.expires_at is None else f"{fresh.expires_at - self._clock():.0f}s",
            )


def _digest(files: Sequence[Path]) -> str | None:
    """The SHA-256 of the files' contents, None when one cannot be read (**Secret files read again**)."""
    sha = hashlib.sha256()
    try:
        for path in files:
            sha.update(path.read_bytes())
            sha.update(b"\0")
    except OSError:
        return None
    return sha.hexdigest()
