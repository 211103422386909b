"""``coordinator check-airflow INSTANCE``: prove one instance's URL, auth and permissions with read-only calls.

Steps, each with a precise message when it fails (:class:`CheckFailed`, exit 1 in the CLI):
1. DNS: the URL's host resolves.
2. Reachability and API version, with the instance's credentials: ``GET /api/v2/version`` (then ``/api/v1``),
   telling apart connection refused, TLS failures, timeouts, an auth front that refuses the credential, and a URL that
   serves no Airflow API (or not the configured version).
3. Auth and permission to read: ``GET /api/{v}/dags?limit=1`` (needs a valid credential and the read permission on
   DAGs), then the first DAG's runs (read on runs). Triggering and clearing cannot be proven without changing
   anything; the summary names the permissions the watcher needs besides.

Nothing here writes to Airflow.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from coordinator.airflow.client import AirflowClient
from coordinator.airflow.runs import ApiVersion
from coordinator.errors import AirflowAuthError, AirflowError, AirflowNotFound, AirflowUnavailable, CoordinatorError
from coordinator.runtime.redact import redact_url
from coordinator.runtime.settings import InstanceSettings

#: What the watcher does besides reading, for the summary (Airflow's permission names).
NEEDS = "trigger (can_create on DAG Runs), clear (can_edit on DAG Runs / Task Instances), read DAGs and runs"


class CheckFailed(CoordinatorError):
    """One step of the check failed; the message says which, why, and what to look at."""


async def check_airflow(
    name: str, settings: InstanceSettings, report: Callable[[str], None], *, timeout_s: float = 10.0
) -> None:
    """Run the steps, telling ``report`` each success; raise CheckFailed at the first failure."""
    method = settings.auth.method
    host = urlsplit(settings.url).hostname or ""
    port = urlsplit(settings.url).port or (443 if settings.url.startswith("https") else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CheckFailed(
            f"{name}: DNS: cannot resolve {host!r} ({exc.strerror}); check the host name in the instance's url"
        ) from exc
    report(f"DNS: {host} -> {', '.join(sorted({str(i[4][0]) for i in infos}))}")
    async with AirflowClient(settings, timeout_s=timeout_s, name=name) as client:
        try:
            api = await client.api_version()
            version = await client.version()
        except AirflowError as exc:
            raise CheckFailed(_explain(name, settings, exc, "reaching the API")) from exc
        report(f"API: {redact_url(settings.url)}/api/{api} answers, Airflow {version} (credential sent: {method})")
        if api is ApiVersion.V1 and version.startswith("3."):
            raise CheckFailed(f"{name}: wrong API version: Airflow {version} serves /api/v2; set api to v2 or auto")
        try:
            dags = await client.any_dag()
        except AirflowError as exc:
            raise CheckFailed(_explain(name, settings, exc, "reading DAGs")) from exc
        report(f"auth: {method} credential accepted; may read DAGs" + (f" (e.g. {dags})" if dags else " (none yet)"))
        if dags:
            try:
                await client.list_runs(dags, datetime(1970, 1, 1, tzinfo=UTC), limit=1)
            except AirflowError as exc:
                raise CheckFailed(_explain(name, settings, exc, f"reading runs of {dags}")) from exc
            report(f"permissions: may read runs of {dags}")
    report(f"{name} is reachable and authenticated; the watcher also needs: {NEEDS}")


def _explain(name: str, settings: InstanceSettings, exc: AirflowError, doing: str) -> str:
    """The precise message for a failed step: what happened, and where to look."""
    method = settings.auth.method
    if isinstance(exc, AirflowUnavailable):
        cause = _root(exc)
        url = redact_url(settings.url)  # a user:pass@ in the url never reaches the message
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return (
                f"{name}: TLS: the server's certificate is not trusted ({_short(cause)}); set SSL_CERT_FILE to the "
                f"CA bundle that signed it, or check the host name in the url"
            )
        if isinstance(cause, ssl.SSLError) or "SSL" in type(cause).__name__ or "ssl" in str(exc).lower():
            return f"{name}: TLS: handshake failed ({_short(cause)}); is the port serving https (or plain http)?"
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(exc).lower():
            return (
                f"{name}: connection refused at {urlsplit(url).netloc}: nothing listens there; check the "
                f"url's port and that the web server runs"
            )
        if "timed out" in str(exc):
            return f"{name}: timed out {doing} at {url}: a firewall or IP allow-list may drop the traffic"
        return f"{name}: cannot reach {url} ({doing}): {exc}"
    if isinstance(exc, AirflowAuthError):
        if exc.status == 401 or exc.status == 0:
            return f"{name}: 401 unauthenticated ({doing}): the {method} credential was not accepted: {exc}"
        return (
            f"{name}: 403 forbidden ({doing}): the {method} credential lacks permission, or is one the server "
            f"cannot verify (Airflow 3 answers 403 to such a token); give the watcher's identity an Airflow role "
            f"that may {NEEDS}: {exc}"
        )
    if isinstance(exc, AirflowNotFound) or "no Airflow REST API" in str(exc):
        return (
            f"{name}: wrong API version or URL ({doing}): {exc}; the url must be the Airflow web server's base "
            f"URL (no /api suffix); api is {settings.api!r} (auto finds v2 on Airflow 3, v1 on Airflow 2)"
        )
    return f"{name}: {doing} failed: {exc}"


def _root(exc: BaseException) -> BaseException:
    seen = exc
    while seen.__cause__ is not None or (seen.__context__ is not None and not seen.__suppress_context__):
        nxt = seen.__cause__ if seen.__cause__ is not None else seen.__context__
        assert nxt is not None
        seen = nxt
    return seen


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"
