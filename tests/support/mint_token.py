"""A token command for the ``exec`` auth method in tests: prints ``{"token", "expires_at"}`` signed for the front.

Usage: ``python tests/support/mint_token.py SECRET_FILE TTL_S [--deny-file PATH] [--count-file PATH]``. The token is
``x-<expiry ms>-<nonce>-<hmac>`` with the secret read from SECRET_FILE (so the test can rotate it), accepted by
:class:`tests.support.auth_front.SignedTokens` until its expiry. When ``--deny-file`` exists the command fails as a
revoked credential would (stderr, status 1). ``--count-file`` gets one line per run. Standard library only: it runs
once per token, in the watcher's process tree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def sign(secret: str, exp_ms: int, nonce: str) -> str:
    return hmac.new(secret.encode(), f"{exp_ms}-{nonce}".encode(), hashlib.sha256).hexdigest()[:32]


def mint(secret: str, ttl_s: float) -> tuple[str, float]:
    """A token valid for ``ttl_s`` seconds and its expiry (Unix time)."""
    exp = time.time() + ttl_s
    exp_ms, nonce = int(exp * 1000), secrets.token_hex(6)
    return f"x-{exp_ms}-{nonce}-{sign(secret, exp_ms, nonce)}", exp


def main(argv: list[str]) -> int:
    secret_file, ttl = Path(argv[0]), float(argv[1])
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    if "--count-file" in options:
        with Path(options["--count-file"]).open("a", encoding="utf-8") as f:
            f.write("run\n")
    if "--deny-file" in options and Path(options["--deny-file"]).exists():
        print("error: access denied: the service account was disabled", file=sys.stderr)
        return 1
    token, exp = mint(secret_file.read_text(encoding="utf-8").strip(), ttl)
    print(json.dumps({"token": token, "expires_at": datetime.fromtimestamp(exp, UTC).isoformat()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
