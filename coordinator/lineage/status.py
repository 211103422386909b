"""What ``coordinator doctor`` asks the OpenLineage receiver (``lineage/receiver.py``'s **The status answer**): one GET
with a producer's token.

The standard library's HTTP client, not httpx: only the Airflow adapter imports httpx (an import contract), and one
request from a diagnostic command needs nothing more.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.core.lineage.ignored import IgnoredJob
from coordinator.diagnosis import LineageProbe
from coordinator.lineage.receiver import STATUS


def receiver_status(url: str, token_file: str | None, timeout_s: float) -> LineageProbe:
    """The receiver's answer at ``url`` as a :class:`LineageProbe` (never raises)."""
    url = url.rstrip("/")
    request = urllib.request.Request(f"{url}{STATUS}", method="GET")  # noqa: S310 - the operator's own URL
    if token_file:
        try:
            request.add_header("Authorization", f"Bearer {Path(token_file).read_text().strip()}")
        except OSError as exc:
            return LineageProbe(url=url, error=f"cannot read COORDINATOR_LINEAGE_TOKEN_FILE: {exc.strerror or exc}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return LineageProbe(url=url, error=str(reason) or type(exc).__name__)
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if status != 200:
        return LineageProbe(url=url, status=status, error=str(body.get("detail", ""))[:300])
    instances = body.get("instances")
    found = {str(k): str(v) for k, v in instances.items()} if isinstance(instances, dict) else {}
    ignored = body.get("ignored")
    jobs = tuple(job for item in ignored if (job := _ignored(item)) is not None) if isinstance(ignored, list) else ()
    return LineageProbe(url=url, status=200, token=str(body.get("token")), instances=found, ignored=jobs)


def _ignored(item: Any) -> IgnoredJob | None:
    """One entry of the status answer's ``ignored`` (``lineage/receiver.py``'s **Ignored jobs remembered**); None for
    one that does not read (an older or newer receiver: doctor shows what it can)."""
    if not isinstance(item, dict):
        return None
    try:
        return IgnoredJob(
            namespace=str(item["namespace"]), job=str(item["job"]), count=int(item["count"]), why=str(item["why"]),
            first_seen=datetime.fromisoformat(item["first_seen"]), last_seen=datetime.fromisoformat(item["last_seen"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
