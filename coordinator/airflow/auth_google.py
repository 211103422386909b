"""The ``google`` auth method (Cloud Composer 2 and 3): Google's application default credentials via google-auth.

google-auth (the maintained library, extra ``[google]``) finds the credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
gcloud's application default credentials, the metadata server of a GCE/GKE workload), signs what has to be signed
and refreshes the OAuth access token at the token endpoint. Its HTTP calls go through a small adapter over httpx
(:class:`_HttpxRequest`) instead of ``requests``: no extra dependency, and the client's explicit timeout instead of
google-auth's 120 s default. It is synchronous, so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport
import httpx

from coordinator.airflow.auth import Credential, Exchange, bearer
from coordinator.airflow.runs import ApiVersion
from coordinator.errors import AirflowAuthError, AirflowUnavailable

#: Composer's REST API accepts Google OAuth access tokens of this scope.
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class _Response(google.auth.transport.Response):
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    @property
    def data(self) -> bytes:
        return self._resp.content


class _HttpxRequest(google.auth.transport.Request):
    """google-auth's transport interface over httpx, with an explicit timeout."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        try:
            resp = httpx.request(
                method, url, content=body, headers=headers, timeout=min(timeout or self._timeout_s, self._timeout_s)
            )
        except httpx.HTTPError as exc:
            raise google.auth.exceptions.TransportError(f"{type(exc).__name__}: {exc}") from exc  # type: ignore[no-untyped-call]
        return _Response(resp)


class GoogleMethod:
    """An OAuth access token of the default credentials (scope cloud-platform), renewed before it expires."""

    name = "google"
    depends_on_api = False

    def __init__(self, instance: str, timeout_s: float) -> None:
        self._instance = instance
        self._timeout_s = timeout_s
        self._credentials: Any = None

    def refreshable(self, api: ApiVersion | None) -> bool:
        return True

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> Credential:
        prefix = f"{self._instance}: google auth:"
        try:
            if self._credentials is None:
                self._credentials, _project = google.auth.default(scopes=[SCOPE])
            self._credentials.refresh(_HttpxRequest(self._timeout_s))
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise AirflowAuthError(f"{prefix} no application default credentials: {exc}") from exc
        except google.auth.exceptions.TransportError as exc:
            raise AirflowUnavailable(f"{prefix} token endpoint unreachable: {exc}") from exc
        except google.auth.exceptions.GoogleAuthError as exc:
            # RefreshError: the token endpoint refused (disabled or deleted service account, revoked key).
            raise AirflowAuthError(f"{prefix} token refresh refused: {exc}") from exc
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise AirflowAuthError(f"{prefix} the credentials gave no access token")
        credential = bearer(token)
        expiry = self._credentials.expiry  # naive UTC (google-auth's convention)
        expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else None
        return Credential(credential.headers, expires_at, credential.secrets)
