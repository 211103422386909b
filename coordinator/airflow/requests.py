"""One request to one Airflow instance: the credential, the instance's gate and slots, the single refresh, and the
one mapping of failures onto errors. The path every call of the REST client (``client.AirflowClient``, which adds
the endpoints to it) takes; its log lines are the client's (the logger keeps that name).

Rules:
- **Timeouts everywhere.** Every request carries the configured timeout (httpx's own default is 5 s); nothing waits
  forever.
- **One error mapping.** HTTP and transport failures are mapped in one place (:meth:`InstanceRequests._send`): 5xx,
  429, timeouts and connection errors -> AirflowUnavailable; 404 -> AirflowNotFound; 401/403 that survive one refresh
  of the credential (or whose method cannot refresh) -> AirflowAuthError; 409 -> AirflowConflict unless the method
  explains it; any other 4xx -> AirflowError with the server's detail, trimmed. Each error names the method, path and
  status of the request that actually failed, never the one before it.
- **No credential in errors.** No credential (password, token, cookie) reaches an error message or a log line: login
  failures carry no response body and every detail text is scrubbed of them
  (:meth:`coordinator.airflow.auth.Authenticator.redact`).
- **One refresh, no retry policy.** The only retry here is the single refresh-and-retry after a 401/403 (rules of
  :mod:`coordinator.airflow.auth`: shared by concurrent requests, counted when it fails). The retry POLICY belongs to
  the caller (the actuator retries AirflowUnavailable only, with :mod:`coordinator.runtime.retry`).
- **One backoff per instance.** Every call passes the instance's gate (:mod:`coordinator.airflow.gate`) first: while
  the instance refuses our credentials (a login refused, a credential that cannot be obtained, a 401, a 403 to a
  credential it never accepted) or asked us to slow down (429 with ``Retry-After``), calls are kept back without a
  request (``AirflowBackingOff``) and one probe goes per backoff step; a refusal also drops the credential, so the
  probe obtains a new one (a password or token file is read again). A 403 after a successful fresh login is a missing
  permission on that object, not a refusing instance: it stays that call's error.
- **Calls at once.** With ``max_calls``, at most that many calls are in flight to the instance at once; the others
  wait for a slot before the gate is asked. Each call holds one of the api-server's database connections while it
  runs, and the tasks of that Airflow need the same pool: a watcher that opened more at once starved them
  (``COORDINATOR_AIRFLOW_MAX_CALLS`` says the default). A call made inside another (a login, the API version
  detected for it) shares its slot, so no call ever waits for a slot its own caller holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Self, TypeVar
from urllib.parse import unquote

import httpx

from coordinator.airflow.auth import Authenticator, AuthMethod, Exchange
from coordinator.airflow.auth_methods import method_for, secret_files
from coordinator.airflow.gate import InstanceGate, Refusal, backing_off_text, iso_at, refused_backoff, retry_after_s
from coordinator.airflow.runs import ApiVersion, error_class, error_detail
from coordinator.airflow.transport import lean_transport_for
from coordinator.errors import (
    AirflowAuthError,
    AirflowBackingOff,
    AirflowConflict,
    AirflowError,
    AirflowNotFound,
    AirflowUnavailable,
)
from coordinator.runtime.redact import redact_url
from coordinator.runtime.retry import RetryPolicy
from coordinator.runtime.settings import InstanceSettings

#: The client's logger: these are the REST client's lines (``airflow.request_failed``, ``airflow.refusing``, ...).
log = logging.getLogger("coordinator.airflow.client")
T = TypeVar("T")
#: A request's query: a list value repeats the parameter (``timetable_type=A&timetable_type=B``).
Params = Mapping[str, str | Sequence[str]]
#: Set while a call the gate admitted runs (in its task): the calls it makes itself are part of it.
_GATED: ContextVar[bool] = ContextVar("airflow_gated", default=False)
#: Longest server detail kept in an error message: enough for Airflow's sentences, short enough for one log line.
DETAIL_MAX = 300
USER_AGENT = "airflow-etcd-coordinator"


class _Forbidden(AirflowAuthError):
    """A 403 to a credential the instance accepts (a fresh login just worked, or it answered with it before): a missing
    permission on that object, not a refusing instance (**One backoff per instance**)."""


class InstanceRequests:
    """The requests to one Airflow instance (every rule of the module); ``client.AirflowClient`` is this with the
    endpoints.

    The API version is detected on first use when ``settings.api`` is ``auto``, with the instance's credentials. Safe
    for concurrent use from one event loop: a credential refresh is shared by every request that saw the same stale
    credential. ``on_auth_failure(instance, method)`` is told of every credential that could not be obtained and every
    request a fresh credential could not authenticate (the metric ``coordinator_airflow_auth_failures_total``).
    ``auth`` replaces the method the settings name (tests). ``backoff`` is the policy of **One backoff per instance**,
    ``on_refusal(instance, refusal)`` is told of each step and of the opening (None); ``max_calls`` is
    **Calls at once**'s bound (None: none).
    """

    def __init__(
        self,
        settings: InstanceSettings,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        name: str = "default",
        on_request: Callable[[str, str, str, float], None] | None = None,
        purpose: str = "",
        on_auth_failure: Callable[[str, str], None] | None = None,
        auth: AuthMethod | None = None,
        backoff: RetryPolicy | None = None,
        on_refusal: Callable[[str, Refusal | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_calls: int | None = None,
    ) -> None:
        # A purpose (``check``) goes into the User-Agent (Airflow's access log tells the probes' 4xx apart) and makes
        # failures debug lines: the check expects refusals and reports its own verdict.
        self._quiet = bool(purpose)
        self.name = name
        # Told (instance, method, status or timeout/error, seconds) of every HTTP exchange (the watcher's metrics).
        self._on_request = on_request or (lambda instance, method, status, seconds: None)
        self._settings = settings
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=settings.url,
            timeout=httpx.Timeout(timeout_s),
            # The lean keep-alive transport (transport.py: a third of httpcore's CPU per request) unless a
            # proxy applies; an injected transport (tests) wins.
            transport=transport if transport is not None else lean_transport_for(settings.url),
            headers={"Accept": "application/json", "User-Agent": f"{USER_AGENT}/{purpose}".rstrip("/")},
            # A redirect to a login page must surface as an error, not be followed to an HTML 200.
            follow_redirects=False,
        )
        self._api: ApiVersion | None = None if settings.api == "auto" else ApiVersion(settings.api)
        self._detect_lock = asyncio.Lock()
        self.auth = Authenticator(
            auth if auth is not None else method_for(name, settings, timeout_s),
            instance=name,
            on_failure=on_auth_failure,
            secret_files=secret_files(settings) if auth is None else (),
        )
        self._exchange = Exchange(self._raw, self._error)
        self._clock, self._wall = clock, wall
        told = on_refusal or (lambda instance, refusal: None)
        # A probe is a login and one call: twice the request timeout before another caller may try.
        self.gate = InstanceGate(backoff or refused_backoff(), probe_hold_s=2 * timeout_s,
                                 on_change=lambda refusal: told(name, refusal))  # fmt: skip
        #: The credential generations the instance answered without a 401/403 (the last few: a 403 to one of them is a
        #: missing permission, **One backoff per instance**).
        self._accepted_gen = -1
        #: **Calls at once**: the slots of the calls in flight (None: no bound).
        self._slots = asyncio.Semaphore(max_calls) if max_calls is not None else None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def ready_in(self) -> float:
        """Seconds before work for this instance should start (0: now), from **One backoff per instance**; a caller
        told 0 while the instance refuses makes the probe."""
        return self.gate.ready(self._clock())

    async def api_version(self) -> ApiVersion:
        """v2 or v1; detected once (``GET /api/v2/version``, then ``/api/v1/version``) when settings say auto."""
        if self._api is None:
            async with self._detect_lock:
                if self._api is None:
                    self._api = await self._gated("GET", "/api/v2/version", self._detect)
        return self._api

    @property
    def known_major(self) -> int | None:
        """Airflow's major version as far as already known without a request: only Airflow 3 serves ``/api/v2``
        (None until the API version was detected or configured)."""
        if self._api is None:
            return None
        return 3 if self._api is ApiVersion.V2 else 2

    async def _detect(self) -> ApiVersion:
        """v2 or v1, asked with the instance's credentials (a managed front answers 401/403 without them)."""
        v2 = await self._probe("/api/v2/version")
        if v2.status_code == 200:
            return ApiVersion.V2
        if v2.status_code >= 500:
            raise self._error("GET", "/api/v2/version", v2)
        if v2.status_code in (401, 403):
            # An auth front before any API: the credential is wrong, and guessing v1 would hide that.
            raise self._refused("GET", "/api/v2/version", v2, refreshed=self.auth.method.refreshable(None))
        v1 = await self._probe("/api/v1/version")
        # 401/403 still prove the v1 API is there; the credentials problem surfaces on the first real call.
        if v1.status_code in (200, 401, 403):
            return ApiVersion.V1
        if v1.status_code >= 500:
            raise self._error("GET", "/api/v1/version", v1)
        raise self._log(
            AirflowError(
                f"{self.name}: no Airflow REST API at {redact_url(self._settings.url)}: "
                f"GET /api/v2/version -> {v2.status_code}, GET /api/v1/version -> {v1.status_code}",
                status=v1.status_code,
            )
        )

    async def _probe(self, path: str) -> httpx.Response:
        """GET a version path with the credential, refreshed and retried once on 401/403 (``auth``
        **One shared refresh**)."""
        for attempt in (1, 2):
            gen, credential = await self.auth.credential(None, self._exchange)
            resp = await self._raw("GET", path, headers=credential.headers)
            if (
                attempt == 1
                and resp.status_code in (401, 403)
                and await self.auth.refresh(gen, None, self._exchange, resp.status_code)
            ):
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        probe: bool = False,
        quiet: bool = False,
    ) -> Any:
        """Send one request with the credential and the single refresh-and-retry; map failures; return the JSON;
        through the instance's gate (**One backoff per instance**).

        ``probe``: the version probe's credential (the same for both API versions: no Airflow 3 login needed for it).
        ``quiet``: a failure the caller expects and reports itself is a debug line, not a warning.
        """
        return await self._gated(
            method, path, lambda: self._send_once(method, path, json=json, params=params, probe=probe, quiet=quiet)
        )

    async def _gated(self, method: str, path: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` if the gate admits it, its outcome told to the gate (**One backoff per instance**), once a slot
        is free (**Calls at once**). A call made inside an admitted one (the API version detected for it, a login) is
        part of it: it takes no slot of its own."""
        if _GATED.get():
            return await call()
        if self._slots is None:
            return await self._admitted(method, path, call)
        async with self._slots:
            return await self._admitted(method, path, call)

    async def _admitted(self, method: str, path: str, call: Callable[[], Awaitable[T]]) -> T:
        """``_gated``'s call, its slot taken."""
        gate = self.gate
        admission = gate.admit(self._clock())
        if admission.wait_s > 0:
            refusal = gate.refusal
            assert refusal is not None  # a gate that holds calls back holds a refusal
            raise AirflowBackingOff(
                backing_off_text(
                    self.name, self._settings.credentials_from, method, unquote(path), refusal, admission.wait_s
                ),
                refusal.status,
                admission.wait_s,
            )
        token = _GATED.set(True)
        try:
            result = await call()
        except AirflowBackingOff:
            raise
        except _Forbidden:
            gate.accepted(admission.epoch)
            raise
        except AirflowAuthError as exc:
            reason = "credentials refused" if exc.status else "no credential could be obtained"
            self._refusing(exc.status, reason, admission.epoch)
            raise
        except AirflowUnavailable:
            raise  # proves nothing (a 429 with Retry-After closed the gate where it was answered)
        except AirflowError:
            gate.accepted(admission.epoch)  # an answer such as 404 or 409 took our credential
            raise
        finally:
            _GATED.reset(token)
            if admission.probe:
                gate.released()  # no-op once the outcome above settled it (a cancellation, a transport error)
        gate.accepted(admission.epoch)
        return result

    def _refusing(self, status: int, reason: str, epoch: int) -> None:
        """A refusal: the next backoff step, and the credential dropped, so the probe after it obtains a new one."""
        refusal = self.gate.refused(self._clock(), self._wall(), status, reason, epoch)
        if refusal is None:
            return  # another call's refusal already started this step (``gate``'s **Counted once**)
        self.auth.invalidate()
        # A check (``purpose``) reports its own verdict and makes no second call: its step is no news.
        level = logging.DEBUG if self._quiet else logging.WARNING
        log.log(level, "airflow.refusing instance=%s status=%s reason=%r attempts=%d retry_in_s=%.1f since=%s",
                self.name, status, reason, refusal.attempts, refusal.step_s, iso_at(refusal.since))  # fmt: skip

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Params | None = None,
        probe: bool = False,
        quiet: bool = False,
    ) -> Any:
        api = await self.api_version()
        auth_api = None if probe else api
        resp: httpx.Response | None = None
        for attempt in (1, 2):
            gen, credential = await self.auth.credential(auth_api, self._exchange)
            resp = await self._raw(method, path, headers=credential.headers, json=json, params=params)
            # 401: expired; 403: rejected (e.g. Airflow 3's JWT secret rotated, a revoked token). One refresh, one
            # retry, shared with every concurrent request that saw the same credential (``auth``
            # **One shared refresh**).
            if resp.status_code in (401, 403):
                if attempt == 1 and await self.auth.refresh(gen, auth_api, self._exchange, resp.status_code):
                    continue
                accepted = attempt == 2 or gen == self._accepted_gen
                raise self._refused(method, path, resp, refreshed=attempt == 2, accepted=accepted)
            self._accepted_gen = gen
            break
        assert resp is not None  # the loop runs at least once
        if resp.is_success:
            if resp.status_code == 204 or not resp.content:
                return None
            data = _json_or_none(resp)
            if data is None:
                raise self._bad_payload(method, path, "body is not JSON")
            return data
        if resp.status_code == 429:
            self._throttled(resp)
        raise self._error(method, path, resp, quiet=quiet)

    def _throttled(self, resp: httpx.Response) -> None:
        """A 429 that names a ``Retry-After`` (seconds, or an HTTP date): every call waits until then."""
        retry_after = retry_after_s(resp.headers.get("retry-after"), self._wall())
        if retry_after is None:
            return  # no time named: an ordinary transient failure, retried by the caller's policy
        refusal = self.gate.throttled(self._clock(), self._wall(), retry_after)
        log.warning("airflow.throttled instance=%s retry_after_s=%.1f retry_in_s=%.1f", self.name, retry_after,
                    refusal.step_s)  # fmt: skip

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Params | None = None,
    ) -> httpx.Response:
        """One HTTP exchange; transport failures become AirflowUnavailable with status 0."""
        started = time.monotonic()
        status = "error"  # no answer: a transport error, or "timeout"
        try:
            resp = await self._http.request(method, path, headers=headers, json=json, data=data, params=params)
            status = str(resp.status_code)
        except httpx.TimeoutException as exc:
            status = "timeout"
            raise self._log(
                AirflowUnavailable(f"{self.name}: {method} {unquote(path)}: timed out after {self._timeout_s:g} s")
            ) from exc
        except httpx.TransportError as exc:
            # The exception text names the socket error, never headers, so it cannot leak credentials.
            reason = self._redact(str(exc))[:DETAIL_MAX] or type(exc).__name__
            raise self._log(
                AirflowUnavailable(f"{self.name}: {method} {unquote(path)}: connection failed: {reason}")
            ) from exc
        finally:
            self._on_request(self.name, method, status, time.monotonic() - started)
        log.debug("airflow.request instance=%s method=%s path=%s status=%s ms=%.1f", self.name, method, path,
                  resp.status_code, (time.monotonic() - started) * 1000)  # fmt: skip
        return resp

    def _error(
        self,
        method: str,
        path: str,
        resp: httpx.Response,
        *,
        quiet: bool = False,
        cls: type[AirflowError] | None = None,
    ) -> AirflowError:
        """THE status -> exception mapping; the message carries this request's own method, path and status."""
        status = resp.status_code
        message = f"{self.name}: {method} {unquote(path)} -> {status}: {self._detail(resp)}"
        if status == 401 and self._settings.credentials_from:  # Airflow 2's basic auth: the password is wrong
            message += f"; check {self._settings.credentials_from}"
        elif status == 403:
            message += f"; the user {self._settings.username or '(none)'} lacks this permission: give its role access"
        return self._log((cls or error_class(status))(message, status), quiet=quiet)

    def _refused(
        self, method: str, path: str, resp: httpx.Response, *, refreshed: bool, accepted: bool = False
    ) -> AirflowError:
        """A final 401/403: counted (``auth`` **Failures named and counted**), and the message says which credential was
        refused. A 403 to a credential the instance ``accepted`` is a missing permission (**One backoff per
        instance**): :class:`_Forbidden`."""
        status = resp.status_code
        if status == 403 and accepted:
            return self._error(method, path, resp, cls=_Forbidden)
        self.auth.rejected()
        how = "after one refresh" if refreshed else "and cannot be refreshed"
        message = (
            f"{self.name}: {method} {unquote(path)} -> {status}: {self._detail(resp)} "
            f"({self.auth.method.name} credential refused {how})"
        )
        if self.auth.method.name == "password" and self._settings.credentials_from:
            message += f"; check {self._settings.credentials_from}"
        return self._log(error_class(status)(message, status))

    def _detail(self, resp: httpx.Response) -> str:
        body = _json_or_none(resp)
        text = resp.text if body is None else error_detail(body)
        text = " ".join(self._redact(text).split()) or resp.reason_phrase
        return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"

    def _redact(self, text: str) -> str:
        password = self._settings.password.get_secret_value() if self._settings.password else ""
        return self.auth.redact(text.replace(password, "***") if password else text)

    def _bad_payload(self, method: str, path: str, what: str) -> AirflowError:
        return self._log(AirflowError(f"{self.name}: {method} {unquote(path)}: unexpected response: {what}", 200))

    def _parsed(self, parse: Callable[[object, str], T], method: str, path: str, data: object, dag_id: str) -> T:
        try:
            return parse(data, dag_id)
        except ValueError as exc:
            raise self._bad_payload(method, path, str(exc)) from exc

    def _log(self, exc: AirflowError, *, quiet: bool = False) -> AirflowError:
        # 404 and 409 are answers callers expect and handle; everything else is worth a warning.
        expected = quiet or self._quiet or isinstance(exc, AirflowNotFound | AirflowConflict)
        level = logging.DEBUG if expected else logging.WARNING
        log.log(level, "airflow.request_failed instance=%s status=%s error=%s", self.name, exc.status, exc)
        return exc


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None
