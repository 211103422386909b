"""Who may send OpenLineage events, and for which job namespaces (semantics `lineage-receiver`).

The tokens file (``COORDINATOR_LINEAGE_TOKENS_FILE``) holds no secret: each entry is a token's SHA-256, so the file
can live in a ConfigMap while each producer's token stays in its own Secret::

    {"tokens": [{"name": "dbt-analytics", "sha256": "9f86d0...", "namespaces": ["dbt_prod", "dbt_staging"]}]}

Rules:
- **Hashed bearer tokens.** A request's ``Authorization: Bearer <token>`` is hashed and compared with every entry in
  constant time; no match (or no header) is 401. The token never reaches a log line; the entry's ``name`` does.
- **Namespaces per token.** Every event of a request must have a namespace one of the entry's ``namespaces`` patterns
  matches (``fnmatch``, case-sensitive); one that does not refuses the whole request with 403 before anything is
  written: a dbt project's token cannot write Spark's jobs.
- **Unparsable files.** A file that does not parse is a configuration error at start (the command exits naming the file
  and the problem); once serving, a changed file that does not parse is logged and the last valid one stays in force.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from coordinator.errors import ConfigError

#: ``secrets.token_urlsafe(32)``: 256 bits.
TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    sha256: str
    namespaces: tuple[str, ...]

    def allows(self, namespace: str) -> bool:
        """**Namespaces per token**."""
        return any(fnmatchcase(namespace, pattern) for pattern in self.namespaces)


@dataclass(frozen=True, slots=True)
class Tokens:
    entries: tuple[TokenEntry, ...]

    def holder(self, authorization: str | None) -> TokenEntry | None:
        """**Hashed bearer tokens**: the entry whose token the header carries, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_token(token.strip())
        found = None
        for entry in self.entries:  # every entry compared: the time taken says nothing about which matched
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def load_tokens(path: Path) -> Tokens:
    """**Unparsable files**: the file's entries, or ConfigError naming the file and what is wrong."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the lineage tokens file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: the lineage tokens file is not JSON: {exc}") from None
    items = doc.get("tokens") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f'{path}: expected {{"tokens": [{{"name": ..., "sha256": ..., "namespaces": [...]}}]}}')
    entries: list[TokenEntry] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path}: tokens[{index}]"
        if not isinstance(item, dict) or set(item) - {"name", "sha256", "namespaces", "description"}:
            raise ConfigError(f"{where}: expected an object with name, sha256, namespaces (and description)")
        name, digest, namespaces = item.get("name"), item.get("sha256"), item.get("namespaces")
        if not isinstance(name, str) or not name or name in names:
            raise ConfigError(f"{where}.name: expected a unique non-empty name")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"{where}.sha256: expected 64 lowercase hex digits (`coordinator lineage token NAME --namespace "
                "NAMESPACE` prints it)"
            )
        if not isinstance(namespaces, list) or not namespaces or not all(isinstance(n, str) and n for n in namespaces):
            raise ConfigError(f"{where}.namespaces: expected a non-empty list of namespace patterns")
        names.add(name)
        entries.append(TokenEntry(name, digest, tuple(namespaces)))
    return Tokens(tuple(entries))
