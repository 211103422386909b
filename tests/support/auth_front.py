"""Local stand-ins for what managed Airflow services put in front of Airflow, for the auth tests.

- :class:`AuthFront`: a reverse proxy before a real (or fake) Airflow that enforces ONE auth method the way the
  service does and forwards accepted requests with the upstream's own credentials (a JWT from ``/auth/token`` on
  Airflow 3, HTTP basic on Airflow 2). Every path is protected, the version endpoints too (Composer's and MWAA's
  fronts are). A rejected request gets 401 (missing, expired or revoked credential) or 403 (a credential it does not
  know, e.g. signed with a rotated key), never reaching Airflow.
- Policies, one per service: :class:`StaticTokens` (Astronomer-like API tokens, rotated: the old one answers 401),
  :class:`SignedTokens` (short-lived tokens that expire: exec commands and Google's token endpoint issue them),
  :class:`MwaaSessions` (MWAA: a web login token, single use and valid 60 s, exchanged at ``/aws_mwaa/login`` for a
  ``session`` cookie that expires).
- :class:`GoogleTokenEndpoint`: the ``token_uri`` of a service-account file: answers google-auth's JWT-bearer POST
  with a short-lived access token (the assertion is checked loosely: form fields and JWT shape).
- :class:`MwaaApi`: the MWAA control-plane API's ``CreateWebLoginToken`` (``POST /webtoken/{Name}``), reached by real
  boto3 through ``AWS_ENDPOINT_URL_MWAA``; checks the request is SigV4-signed, not the signature.

All bind 127.0.0.1 on a free port, and close every connection after one answer (no keep-alive socket outlives stop).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.support.mint_token import mint, sign

Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, str, dict[str, str], bytes], Answer]
_HOP = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length", "authorization", "cookie"})


def json_answer(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, handler: Handler) -> None:
        self.handle_fn = handler
        super().__init__(("127.0.0.1", 0), _Http)


class _Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, out_headers, data = self.server.handle_fn(self.command, self.path, headers, body)
        except Exception as exc:  # a bug of the stand-in: answer 500 loudly
            status, out_headers, data = json_answer(500, {"detail": f"stand-in error: {type(exc).__name__}: {exc}"})
        self.close_connection = True
        try:
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Served:
    """A handler on its own loopback port; a context manager that stops it (joining its threads)."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    def start(self) -> Served:
        self._server = _Server(self.handle)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------ policies


class Policy(Protocol):
    def check(self, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """None when the request's credential is accepted, else (401 or 403, detail)."""
        ...

    def own(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        """An answer for an endpoint of the front itself (a login), else None."""
        ...


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    return value[7:].strip() if value.startswith("Bearer ") else None


class StaticTokens:
    """Long-lived API tokens (Astronomer): accepted until rotated or revoked; a replaced token answers 401."""

    def __init__(self, token: str) -> None:
        self._lock = threading.Lock()
        self.valid = {token}
        self.retired: set[str] = set()
        self.accepted: Counter[str] = Counter()

    def rotate(self, new: str) -> None:
        """The new token replaces every valid one at once."""
        with self._lock:
            self.retired |= self.valid
            self.valid = {new}

    def add(self, token: str) -> None:
        """A new token valid beside the current ones (a rotation's first half: create, hand out, then retire)."""
        with self._lock:
            self.valid.add(token)
            self.retired.discard(token)

    def retire(self, token: str) -> None:
        with self._lock:
            self.valid.discard(token)
            self.retired.add(token)

    def check(self, headers: Mapping[str, str]) -> tuple[int, str] | None:
        token = _bearer(headers)
        with self._lock:
            if token is None:
                return 401, "Not authenticated"
            if token in self.retired:
                return 401, "Token revoked"
            if token not in self.valid:
                return 403, "Invalid token"
            self.accepted[token] += 1
        return None

    def own(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        return None


class SignedTokens:
    """Short-lived tokens signed with a secret (exec commands mint them, Google's endpoint issues them).

    Expired -> 401 "Token Expired"; a bad signature (the secret was rotated) -> 403.
    """

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or secrets.token_hex(16)
        self._lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.expired_seen = 0

    def issue(self, ttl_s: float) -> tuple[str, float]:
        return mint(self.secret, ttl_s)

    def check(self, headers: Mapping[str, str]) -> tuple[int, str] | None:
        token = _bearer(headers)
        if token is None:
            return 401, "Not authenticated"
        parts = token.split("-")
        if len(parts) != 4 or parts[0] != "x" or not parts[1].isdigit():
            return 403, "Invalid token"
        exp_ms, nonce, sig = int(parts[1]), parts[2], parts[3]
        if sign(self.secret, exp_ms, nonce) != sig:
            return 403, "Invalid token signature"
        if time.time() * 1000 >= exp_ms:
            with self._lock:
                self.expired_seen += 1
            return 401, "Token Expired"
        with self._lock:
            self.accepted[token] += 1
        return None

    def own(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        return None


class MwaaSessions:
    """MWAA's web server: ``POST /aws_mwaa/login`` (form ``token``) -> 302 with ``Set-Cookie: session=...``.

    Web login tokens come from :meth:`issue_web_token` (the control-plane stand-in), are single use and valid 60 s.
    Sessions expire after ``session_ttl_s``; a missing, unknown or expired session -> 401.
    """

    WEB_TOKEN_TTL_S = 60.0

    def __init__(self, session_ttl_s: float = 3600.0) -> None:
        self.session_ttl_s = session_ttl_s
        self._lock = threading.Lock()
        self._web_tokens: dict[str, float] = {}
        self._sessions: dict[str, float] = {}
        self.logins = 0
        self.accepted: Counter[str] = Counter()

    def issue_web_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._web_tokens[token] = time.time() + self.WEB_TOKEN_TTL_S
        return token

    def own(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        if urlsplit(path).path != "/aws_mwaa/login":
            return None
        if method != "POST" or not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return json_answer(400, {"detail": "expected a form POST with token"})
        token = parse_qs(body.decode()).get("token", [""])[0]
        with self._lock:
            exp = self._web_tokens.pop(token, None)  # single use
            if exp is None or exp < time.time():
                return json_answer(401, {"detail": "invalid or expired web login token"})
            session = secrets.token_urlsafe(24)
            self._sessions[session] = time.time() + self.session_ttl_s
            self.logins += 1
        return 302, {"Location": "/", "Set-Cookie": f"session={session}; Path=/; HttpOnly; SameSite=Lax"}, b""

    def check(self, headers: Mapping[str, str]) -> tuple[int, str] | None:
        cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
        session = cookies.get("session")
        with self._lock:
            exp = self._sessions.get(session or "")
            if exp is None or exp < time.time():
                return 401, "Unauthorized: no valid session"
            self.accepted[session or ""] += 1
        return None

    def expire_all(self) -> None:
        with self._lock:
            self._sessions.clear()


# ------------------------------------------------------------------------------------------------ the front


class AuthFront(Served):
    """The reverse proxy: ``policy`` decides, accepted requests go to ``upstream`` with the upstream's credentials.

    ``upstream_api``: "v2" logs in at the upstream's ``/auth/token`` (Airflow 3), "v1" sends HTTP basic (Airflow 2).
    """

    def __init__(
        self,
        upstream: str,
        policy: Policy,
        *,
        username: str,
        password: str,
        upstream_api: str,
        forbid: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        #: Path prefixes an accepted credential may not use (403), like a role without that permission.
        self.forbid = forbid
        self.upstream = upstream.rstrip("/")
        self.policy = policy
        self._username, self._password, self._api = username, password, upstream_api
        self._lock = threading.Lock()
        self._jwt: str | None = None
        self.rejected: Counter[int] = Counter()
        self.forwarded = 0
        # One pooled client for every request thread (httpcore's pool locks): a client per request would build an
        # SSL context each time (tens of ms).
        self._client = httpx.Client(timeout=30.0)

    def stop(self) -> None:
        super().stop()
        self._client.close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        own = self.policy.own(method, path, headers, body)
        if own is not None:
            return own
        refusal = self.policy.check(headers)
        if refusal is not None:
            with self._lock:
                self.rejected[refusal[0]] += 1
            return json_answer(refusal[0], {"detail": refusal[1]})
        if urlsplit(path).path.startswith(self.forbid) and self.forbid:
            with self._lock:
                self.rejected[403] += 1
            return json_answer(403, {"detail": "Forbidden: the role lacks this permission"})
        forward = {k: v for k, v in headers.items() if k not in _HOP}
        client = self._client
        for attempt in (1, 2):
            resp = client.request(
                method, self.upstream + path, content=body, headers={**forward, **self._upstream_auth(client)}
            )
            if resp.status_code == 401 and self._api == "v2" and attempt == 1:
                with self._lock:
                    self._jwt = None
                continue
            break
        with self._lock:
            self.forwarded += 1
        out = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "location")}
        return resp.status_code, out, resp.content

    def _upstream_auth(self, client: httpx.Client) -> dict[str, str]:
        if self._api == "v1":
            basic = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        with self._lock:
            if self._jwt is None:
                resp = client.post(
                    self.upstream + "/auth/token", json={"username": self._username, "password": self._password}
                )
                resp.raise_for_status()
                self._jwt = resp.json()["access_token"]
            return {"Authorization": f"Bearer {self._jwt}"}


# ------------------------------------------------------------------------------------------------ cloud stand-ins


class GoogleTokenEndpoint(Served):
    """A service account's ``token_uri``: JWT-bearer grant in, a short-lived access token (of ``tokens``) out."""

    GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

    def __init__(self, tokens: SignedTokens, ttl_s: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.ttl_s = ttl_s
        self.revoked = False
        self.issued = 0

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if method != "POST" or form.get("grant_type") != self.GRANT or form.get("assertion", "").count(".") != 2:
            return json_answer(400, {"error": "invalid_request", "error_description": "expected a JWT-bearer grant"})
        if self.revoked:
            return json_answer(400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"})
        token, _ = self.tokens.issue(self.ttl_s)
        self.issued += 1
        return json_answer(200, {"access_token": token, "expires_in": self.ttl_s, "token_type": "Bearer"})


class MwaaApi(Served):
    """The MWAA API's CreateWebLoginToken for one environment (rest-json, as botocore speaks it)."""

    def __init__(self, sessions: MwaaSessions, environment: str, hostname: str) -> None:
        super().__init__()
        self.sessions = sessions
        self.environment = environment
        self.hostname = hostname
        self.denied = False
        self.calls = 0

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        self.calls += 1
        parts = urlsplit(path).path.strip("/").split("/")
        if method != "POST" or len(parts) != 2 or parts[0] != "webtoken":
            return self._error(404, "UnknownOperationException", f"no operation at {method} {path}")
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return self._error(403, "MissingAuthenticationTokenException", "request is not SigV4-signed")
        if parts[1] != self.environment:
            return self._error(404, "ResourceNotFoundException", f"Environment {parts[1]} not found")
        if self.denied:
            return self._error(
                403, "AccessDeniedException", "User is not authorized to perform: airflow:CreateWebLoginToken"
            )
        return json_answer(
            200,
            {
                "WebToken": self.sessions.issue_web_token(),
                "WebServerHostname": self.hostname,
                "IamIdentity": "arn:aws:iam::000000000000:user/coordinator",
                "AirflowIdentity": "assumed-role/coordinator",
            },
        )

    @staticmethod
    def _error(status: int, code: str, message: str) -> Answer:
        return json_answer(status, {"message": message}, {"x-amzn-ErrorType": code})
