"""What watchers publish about themselves and what ``status`` and ``doctor`` read back: the presence value of
``{prefix}/watchers/{id}`` (docs/keys.md) with each Airflow instance's start check, the leader key, and the header
lines of ``status``.

Rules: values and pure functions only (no I/O); the presence value's fields are only ever added (older watchers'
values still parse, unknown fields are ignored).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_validator

from coordinator.core.graph import Graph
from coordinator.runtime.redact import redact_url


class InstanceCheck(BaseModel):
    """One Airflow instance as probed (by ``doctor``, or by a watcher at start): reachable, login, permissions, DAGs.

    ``None`` in a permission means not asked or not askable (Airflow 2 has no read-only trigger probe).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    instance: str
    url: str | None = None
    api: str | None = None
    version: str | None = None
    login: bool | None = None
    read: bool | None = None
    trigger: bool | None = None
    clear: bool | None = None
    dags_checked: int = 0
    missing: tuple[str, ...] = ()
    paused: tuple[str, ...] = ()
    #: Keyed dependents asked about (``coordinator.core.key_acceptance``); the DAG ids of those whose Airflow DAG
    #: refuses a ``partition_key`` (``keys_refused``) or may (a custom timetable: ``keys_unsure``), and for each of
    #: them one line saying why and what to set where (``keys_said``).
    keyed_checked: int = 0
    keys_refused: tuple[str, ...] = ()
    keys_unsure: tuple[str, ...] = ()
    keys_said: tuple[str, ...] = ()
    error: str | None = None
    fix: str | None = None
    checked_at: datetime | None = None

    @field_validator("url")
    @classmethod
    def _no_userinfo(cls, url: str | None) -> str | None:
        # Logged and written into the presence key every reader of the prefix sees: never a user:pass@ in it.
        return redact_url(url) if url is not None else None

    @property
    def ok(self) -> bool:
        return self.error is None and self.login is not False and False not in (self.read, self.trigger, self.clear)

    def describe(self) -> str:
        """One line: where, which Airflow, and what was wrong (for logs and ``status``)."""
        head = f"{self.url or '(no URL)'}"
        if self.version:
            head += f", Airflow {self.version} ({self.api})"
        if self.error:
            return f"{head}: {self.error}"
        denied = [
            what
            for what, allowed in (("read", self.read), ("trigger", self.trigger), ("clear", self.clear))
            if allowed is False
        ]
        if denied:
            return f"{head}: may not {'/'.join(denied)} its DAGs"
        return f"{head}: login ok"


class InstanceRefusal(BaseModel):
    """An Airflow instance that refuses the watcher's credentials (or throttles it) now: since when, the last status
    and why, refused tries in a row, and when the next try goes (``coordinator/airflow/gate.py``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    instance: str
    since: datetime
    status: int = 0
    reason: str = ""
    attempts: int = 0
    retry_at: datetime | None = None

    def describe(self) -> str:
        """One line for ``doctor`` and ``status``."""
        text = f"refuses us since {self.since.isoformat(timespec='seconds')} ({self.reason}"
        text += f", status {self.status}" if self.status else ""
        text += f", {self.attempts} refused tries in a row" if self.attempts else ""
        if self.retry_at is not None:
            text += f"; next try at {self.retry_at.isoformat(timespec='seconds')}"
        return text + "); its calls wait, the intents stay pending"


class WatcherPresence(BaseModel):
    """A running watcher's presence value (``{prefix}/watchers/{id}``, lease-bound): who, since when, its checks."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    started_at: datetime
    version: str = ""
    instances: tuple[InstanceCheck, ...] = ()
    #: ``watch`` (the service) or ``reconcile-once`` (the last ``reconcile`` pass, e.g. the 00_watcher DAG's:
    #: ``started_at`` is then when that pass ran; the key outlives it by RECONCILE_ONCE_TTL_S).
    mode: str = "watch"
    #: The digest of the graph this watcher plans with (its dependencies.json), and that graph's warnings (an
    #: upstream declared nowhere whose name is close to a DAG's: "did you mean"). Absent in an older watcher's value.
    graph_digest: str | None = None
    graph_warnings: tuple[str, ...] = ()
    #: The instances that refuse this watcher now (absent in an older watcher's value).
    refusing: tuple[InstanceRefusal, ...] = ()


def graph_digests(watchers: Iterable[WatcherPresence]) -> dict[str, list[str]]:
    """Digest -> the watcher services (not ``reconcile`` passes) whose graph it is; a watcher of a version that
    does not say is left out. More than one digest: a failover changes the graph in force."""
    found: dict[str, list[str]] = {}
    for w in watchers:
        if w.mode != RECONCILE_ONCE and w.graph_digest is not None:
            found.setdefault(w.graph_digest, []).append(w.id)
    return {digest: sorted(ids) for digest, ids in sorted(found.items())}


def different_graphs_text(digests: dict[str, list[str]], leader: str | None) -> str:
    """``w1 (leader) runs digest a; w2 runs digest b``: who runs which graph, for ``status`` and ``doctor``."""
    parts = []
    for digest, ids in digests.items():
        named = ", ".join(f"{i} (leader)" if i == leader else i for i in ids)
        parts.append(f"{named} {'runs' if len(ids) == 1 else 'run'} digest {digest}")
    return "; ".join(parts)


#: How long a ``reconcile`` pass stays visible: a 00_watcher DAG on its default one-minute schedule renews it
#: 15 times over; a schedule slower than 15 minutes shows as "no watcher" between passes, which is then nearly true.
RECONCILE_ONCE_TTL_S = 900
RECONCILE_ONCE = "reconcile-once"


def last_reconcile_once(watchers: Iterable[WatcherPresence]) -> WatcherPresence | None:
    passes = [w for w in watchers if w.mode == RECONCILE_ONCE]
    return max(passes, key=lambda w: w.started_at) if passes else None


@dataclass(frozen=True)
class LeaderFact:
    identity: str
    since_revision: int


def started_text(watchers: Iterable[WatcherPresence], identity: str) -> str:
    for w in watchers:
        if w.id == identity:
            return f" (started {w.started_at.isoformat(timespec='seconds')})"
    return ""


def status_header(
    *,
    leader: LeaderFact | None,
    watchers: Sequence[WatcherPresence],
    deps: str,
    local: Graph | None,
    adopted: Graph | None,
    adopted_digest: str | None,
    adopted_rev: int,
) -> list[str]:
    """The lines ``status`` prints above its table: who leads (or that nothing will be triggered), the graph in force
    against the local file, watchers running different graphs, each watcher's graph warnings, and the watchers'
    failed instance checks (each with its fix)."""
    once = last_reconcile_once(watchers)
    if leader is None and once is not None:
        at = once.started_at.isoformat(timespec="seconds")
        lines = [f"no watcher leads between passes; the last `reconcile` pass ({once.id}) ran at {at}: what "
                 "is due is triggered at the next pass"]  # fmt: skip
    elif leader is None:
        lines = [
            "no watcher is leading: nothing will be triggered (start one: `coordinator watch`; `coordinator "
            "doctor` checks the rest)"
        ]
    else:
        since = f"since revision {leader.since_revision}{started_text(watchers, leader.identity)}"
        lines = [f"leader: {leader.identity} ({since})"]
    if adopted_digest is None:
        graph = "graph: none adopted yet"
        if local is not None:
            graph += f"; {deps} is valid (digest {local.digest}): the first watcher adopts it"
    else:
        graph = f"graph: adopted digest {adopted_digest} (revision {adopted_rev})"
        if local is None:
            shown = "showing the adopted graph" if adopted is not None else "the adopted graph cannot be shown"
            graph += f"; {deps} is INVALID ({shown}; `coordinator validate` lists the problems)"
        elif local.digest == adopted_digest:
            graph += f"; {deps} is the same"
        else:
            graph += f"; {deps} differs (digest {local.digest}): see `coordinator diff`"
    lines.append(graph)
    digests = graph_digests(watchers)
    if len(digests) > 1:
        running = different_graphs_text(digests, leader.identity if leader else None)
        lines.append(f"watchers run DIFFERENT graphs: {running}: a failover changes the graph in force (`coordinator "
                     "doctor` names the fix)")  # fmt: skip
    for w in watchers:
        lines += [f"watcher {w.id}: graph warning: {text}" for text in w.graph_warnings]
        lines += [f"watcher {w.id}: Airflow instance {r.instance} {r.describe()}" for r in w.refusing]
        for check in w.instances:
            if not check.ok:
                lines.append(
                    f"watcher {w.id}: Airflow instance {check.instance} failed its start check: "
                    f"{check.describe()}" + (f"; fix: {check.fix}" if check.fix else "")
                )
    return lines


def airflow_majors(watchers: Iterable[WatcherPresence]) -> dict[str, int]:
    """Each instance's Airflow major version as the live watchers' start checks found it (``status`` and ``why``
    predict a root's start from it, as the leader does: ``core.deadline.start``): the version string's major, else
    the API (only Airflow 3 serves v2). An instance no check reached is left out."""
    found: dict[str, int] = {}
    for presence in watchers:
        for check in presence.instances:
            major: int | None = None
            head = (check.version or "").split(".", 1)[0]
            if head.isdigit():
                major = int(head)
            elif check.api in ("v1", "v2"):
                major = 3 if check.api == "v2" else 2
            if major is not None:
                found[check.instance] = major
    return found
