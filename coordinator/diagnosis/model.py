"""What ``doctor`` takes and gives: the facts the shell probed, one :class:`Check` per line, and the text and
JSON forms of the result (:mod:`coordinator.diagnosis`'s **Every problem has a fix** and **Stable result**)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from coordinator.core.assets import TargetAssets
from coordinator.core.graph import Graph
from coordinator.core.holds import Hold
from coordinator.core.lineage.ignored import IgnoredJob
from coordinator.core.retention import RetentionFloor
from coordinator.core.view import View
from coordinator.informer.presence_value import (
    InstanceCheck,
    LeaderFact,
    WatcherPresence,
)

#: Plugin records older than this do not count as "seen recently": two days covers a daily DAG's weekend gap.
RECENT_RECORDS = timedelta(hours=48)
#: Failed or pending intents listed by name; the rest are counted.
MAX_LISTED = 5
#: Jobs the OpenLineage receiver ignored, listed with a did-you-mean; the rest are counted.
MAX_IGNORED_LISTED = 10
JSON_VERSION = 1


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Check(BaseModel):
    """One line of ``doctor``: what was checked, the verdict, and for warn/fail the fix
    (the package's **Every problem has a fix**)."""

    model_config = ConfigDict(frozen=True)
    name: str
    status: CheckStatus
    summary: str
    fix: str | None = None
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingSource:
    """One setting as ``doctor`` shows it: the value (or, for a secret, only that it is set) and where it came from."""

    name: str
    shown: str
    source: str


@dataclass
class DoctorFacts:
    """Everything the shell probed (the package's **Pure**). ``None`` means not reached (an earlier step failed)."""

    settings: Sequence[SettingSource]
    prefix: str
    config_error: str | None = None
    etcd_endpoints: str = ""
    etcd_revision: int | None = None
    etcd_error: str | None = None
    #: The fix line the etcd adapter gave with a TLS mistake (``StoreTlsError.fix``); None for any other failure.
    etcd_fix: str | None = None
    #: The read of the prefix worked / a write would be allowed (None: not asked); the error when refused.
    read_ok: bool | None = None
    write_ok: bool | None = None
    permission_error: str | None = None
    #: Key families (keys or prefixes of ``coordinator.writers.roles.key_families``) this user may not read
    #: (the package's **Partial roles**).
    unreadable: tuple[str, ...] = ()
    etcd_user: str | None = None
    #: etcd's raised alarms (None: not asked, or ``alarms_error`` says why) and the etcdctl words that reach the
    #: same cluster as this user (endpoints, user, TLS files), for the fix of the "etcd alarms" check.
    etcd_alarms: Sequence[EtcdAlarm] | None = None
    alarms_error: str | None = None
    etcdctl: str = "etcdctl"
    deps: str = "dependencies.json"
    local_graph: Graph | None = None
    local_error: str | None = None
    view: View | None = None
    leader: LeaderFact | None = None
    watchers: Sequence[WatcherPresence] = ()
    #: Every key the read model left out, with why (``StoreModel.bad_values``: the view's and its indexes').
    bad_values: Mapping[str, str] = field(default_factory=dict)
    #: Operators' holds as recorded (``{prefix}/holds/``), released ones too; None: not read
    #: (``holds_error`` says why).
    holds: Sequence[Hold] | None = None
    holds_error: str | None = None
    floor: RetentionFloor | None = None
    floor_error: str | None = None
    #: Instances to check (``--instance`` narrows it) and what probing each found.
    instances: Sequence[InstanceCheck] = ()
    only_instance: str | None = None
    #: Semantics `asset-routes`: what each target of the local graph's asset routes holds, or why it could not be read.
    asset_targets: Mapping[str, TargetAssets] = field(default_factory=dict)
    asset_errors: Mapping[str, str] = field(default_factory=dict)
    #: Semantics `lineage-upstreams`: what the OpenLineage receiver answered (None: the local graph maps no OpenLineage
    #: job).
    lineage: LineageProbe | None = None


@dataclass(frozen=True)
class EtcdAlarm:
    """An alarm etcd raised (``etcdctl alarm list``): its name (NOSPACE, CORRUPT) and the member, in hex."""

    name: str
    member: str


@dataclass(frozen=True)
class LineageProbe:
    """The receiver's ``GET /api/v1/lineage/status`` as doctor saw it (``url`` empty: COORDINATOR_LINEAGE_URL unset)."""

    url: str
    #: HTTP status, 0 when nothing answered.
    status: int = 0
    error: str | None = None
    token: str | None = None
    #: instance -> "writable", "denied" or why etcd did not say.
    instances: Mapping[str, str] = field(default_factory=dict)
    #: The jobs it answered ``ignored`` for lately and still would (``lineage/receiver.py``'s
    #: **Ignored jobs remembered**), of the token's namespaces.
    ignored: tuple[IgnoredJob, ...] = ()


def skipped(name: str, why: str) -> Check:
    return Check(name=name, status=CheckStatus.SKIP, summary=f"not checked: {why}")


def passed(checks: Iterable[Check]) -> bool:
    return all(c.status is not CheckStatus.FAIL for c in checks)


def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    """The stable JSON form (the package's **Stable result**)."""
    return {
        "version": JSON_VERSION,
        "ok": passed(checks),
        "checks": [
            {"name": c.name, "status": str(c.status), "summary": c.summary, "fix": c.fix, "details": list(c.details)}
            for c in checks
        ],
    }


def to_text(checks: Sequence[Check]) -> list[str]:
    """One line per check (``[ok]``, ``[warn]``, ``[fail]``, ``[skip]``), details and the fix indented under it."""
    lines: list[str] = []
    for c in checks:
        lines.append(f"[{c.status}] {c.name}: {c.summary}")
        lines += [f"       {d}" for d in c.details]
        if c.fix:
            lines.append(f"       fix: {c.fix}")
    failed = sum(c.status is CheckStatus.FAIL for c in checks)
    warned = sum(c.status is CheckStatus.WARN for c in checks)
    lines.append(f"{failed} failure(s), {warned} warning(s)" if failed or warned else "everything looks right")
    return lines
