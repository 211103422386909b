"""Secrets out of texts that leave the process (logs, etcd keys others read, error messages).

Rules:
- **URLs without user information.** :func:`redact_url` replaces the user information of a URL
  (``https://user:pass@host``) with ``***@``: the URL of an Airflow instance is logged and written into the watcher's
  presence key, which every reader of the prefix sees.
- **Credentials masked in text.** :func:`redact_text` masks what looks like a credential in free text written by another
  program (an exec auth command's stderr): ``key=value`` / ``key: value`` pairs whose key names a secret, ``Bearer`` /
  ``Basic`` credentials, JWTs, URL user information, and long opaque tokens (32+ characters of a base64/hex alphabet).
  It errs on the side of masking: the text is for a human diagnosing a failure, and the exit status stays.
- **Pure**: no I/O.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_SECRET_PAIR = re.compile(
    r"(?i)\b([\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|credential|auth)[\w.-]*)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|\S+)"
)
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_OPAQUE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")


def redact_url(url: str) -> str:
    """**URLs without user information**:
    ``scheme://***@host:port/path`` when the URL carries a user (or password), else ``url`` unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_USERINFO.sub(rf"\1{MASK}@", url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def redact_text(text: str) -> str:
    """**Credentials masked in text**."""
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    # Scheme credentials before pairs: in "Authorization: Bearer X" the pair's value would be only "Bearer".
    text = _SCHEME_CREDENTIAL.sub(rf"\1 {MASK}", text)
    text = _SECRET_PAIR.sub(rf"\1\2{MASK}", text)
    text = _JWT.sub(MASK, text)
    return _OPAQUE.sub(MASK, text)
