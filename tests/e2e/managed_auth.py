"""The managed-service auth set-ups the e2e tests put between the watcher and a real Airflow (see auth_front.py).

:func:`managed` builds, for one method, the front before a real Airflow, the watcher's instances-file ``auth`` object,
the environment the watcher needs (Google's and AWS's libraries pointed at local stand-ins) and the test's levers:
``crossings()`` (how many credential expiries or rotations the watcher went through), ``revoke()`` and
``restore()``. Credentials live ``lifetime_s`` seconds:

- bearer: a rotator replaces the token every ``lifetime_s`` (new token valid, written to the token file, old one
  retired: the watcher's next request meets a 401 and re-reads the file);
- exec: ``tests/support/mint_token.py`` prints tokens that expire after ``lifetime_s``;
- google: the service-account file's token endpoint issues tokens for ``lifetime_s``;
- aws_mwaa: the web server's sessions expire after ``lifetime_s`` (web login tokens come from the MWAA stand-in).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.auth_front import (
    AuthFront,
    GoogleTokenEndpoint,
    MwaaApi,
    MwaaSessions,
    SignedTokens,
    StaticTokens,
)
from tests.support.cloud_auth import google_service_account, mwaa_environment

MINT = str(Path(__file__).resolve().parents[1] / "support" / "mint_token.py")
METHODS = ["bearer", "exec", "google", "aws_mwaa"]


@dataclass
class Managed:
    method: str
    front: AuthFront
    auth: dict[str, Any]
    env: dict[str, str]
    crossings: Callable[[], int]
    revoke: Callable[[], None]
    restore: Callable[[], None]


class _Rotator:
    """Rotates a bearer token every ``every_s``: add the new one, write the file, retire the old one."""

    def __init__(self, tokens: StaticTokens, file: Path, every_s: float) -> None:
        self.tokens, self.file, self.every_s = tokens, file, every_s
        self.current, self.rotations = "tok-0", 0
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bearer-rotator")
        file.write_text(self.current)

    def rotate(self) -> None:
        old, self.current = self.current, f"tok-{self.rotations + 1}"
        self.tokens.add(self.current)
        # Written beside it and renamed in, as a secret mount swaps its files: a file truncated before its write was
        # once read empty by the watcher, which counted an auth failure the test asserts never happens.
        part = self.file.with_name(f"{self.file.name}.part")
        part.write_text(self.current)
        part.replace(self.file)
        self.tokens.retire(old)
        self.rotations += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            if not self.paused.is_set():
                self.rotate()

    def __enter__(self) -> _Rotator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def managed(
    method: str, upstream: str, *, username: str, password: str, upstream_api: str, work: Path, lifetime_s: float
) -> Iterator[Managed]:
    """The front and levers for ``method`` before the Airflow at ``upstream``; everything stopped on exit."""
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:

        def front_for(policy: Any) -> AuthFront:
            return stack.enter_context(
                AuthFront(upstream, policy, username=username, password=password, upstream_api=upstream_api)
            )

        if method == "bearer":
            static = StaticTokens("tok-0")
            front = front_for(static)
            rotator = stack.enter_context(_Rotator(static, work / "token", lifetime_s))

            def revoke_bearer() -> None:
                rotator.paused.set()
                static.retire(rotator.current)  # the file still holds it: the re-read cannot help

            def restore_bearer() -> None:
                rotator.rotate()
                rotator.paused.clear()

            yield Managed(
                method, front, {"method": "bearer", "token_file": str(work / "token")}, {},
                lambda: front.rejected[401], revoke_bearer, restore_bearer,
            )  # fmt: skip
        elif method == "exec":
            signed = SignedTokens()
            front = front_for(signed)
            secret, deny, count = work / "secret", work / "deny", work / "count"
            secret.write_text(signed.secret)
            command = [sys.executable, MINT, str(secret), str(lifetime_s), "--deny-file", str(deny),
                       "--count-file", str(count)]  # fmt: skip

            def revoke_exec() -> None:
                deny.touch()
                signed.secret = "revoked-signing-key"

            def restore_exec() -> None:
                deny.unlink()
                secret.write_text(signed.secret)

            yield Managed(
                method, front, {"method": "exec", "command": command}, {},
                lambda: max(0, len(signed.accepted) - 1), revoke_exec, restore_exec,
            )  # fmt: skip
        elif method == "google":
            signed = SignedTokens()
            front = front_for(signed)
            endpoint = stack.enter_context(GoogleTokenEndpoint(signed, ttl_s=int(lifetime_s)))
            env = google_service_account(work, endpoint.url + "/token")

            def revoke_google() -> None:
                endpoint.revoked = True
                signed.secret = "revoked-signing-key"

            def restore_google() -> None:
                endpoint.revoked = False

            yield Managed(
                method, front, {"method": "google"}, env,
                lambda: max(0, endpoint.issued - 1), revoke_google, restore_google,
            )  # fmt: skip
        elif method == "aws_mwaa":
            sessions = MwaaSessions(session_ttl_s=lifetime_s)
            front = front_for(sessions)
            api = stack.enter_context(MwaaApi(sessions, "e2e-env", front.url.removeprefix("http://")))
            env = mwaa_environment(work, api.url)

            def revoke_mwaa() -> None:
                api.denied = True
                sessions.expire_all()

            def restore_mwaa() -> None:
                api.denied = False

            yield Managed(
                method, front, {"method": "aws_mwaa", "environment": "e2e-env", "region": "eu-west-1"}, env,
                lambda: max(0, sessions.logins - 1), revoke_mwaa, restore_mwaa,
            )  # fmt: skip
        else:
            raise ValueError(method)


def watcher_metrics(log_file: Path) -> str:
    """The text of the watcher's /metrics (its address is in its log: ``http.listening address=...``)."""
    found = re.findall(r"http\.listening address=(\S+)", log_file.read_text(errors="replace"))
    assert found, f"no http.listening line in {log_file}"
    with urllib.request.urlopen(f"http://{found[-1]}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def watcher_ready(log_file: Path) -> int:
    """The status of the watcher's /readyz."""
    found = re.findall(r"http\.listening address=(\S+)", log_file.read_text(errors="replace"))
    try:
        with urllib.request.urlopen(f"http://{found[-1]}/readyz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def auth_failures(metrics_text: str, instance: str, method: str) -> float:
    pattern = rf'^coordinator_airflow_auth_failures_total\{{instance="{instance}",method="{method}"\}} (\S+)$'
    match = re.search(pattern, metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def instances_file(path: Path, entries: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries, indent=2))
    return path
