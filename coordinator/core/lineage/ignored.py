"""The OpenLineage jobs the receiver answered ``ignored`` lately (semantics `lineage-receiver`): a job no entry of
``"openlineage"`` maps is answered 2xx and written nowhere (``lineage.mapping``'s **First match**), so a mistyped job
name would otherwise be found only by capturing the producer's traffic.

Rules:
- **Pure**: the receiver passes the time in; nothing here reads a clock or logs.
- **Bounded**: the last :data:`MAX_IGNORED` distinct (namespace, job) pairs, each with its count, first and last time
  seen and why it was ignored; noting a pair again moves it to the newest end, and the oldest falls out. A name is
  stored cut at :data:`MAX_NAME` characters (what a client sends is not trusted to be short).
- **Still ignored.** What is shown is what is still ignored: :meth:`IgnoredJobs.recent` asks the caller, with the
  mapping in force now, so a job the file maps since a reload disappears at once.
- **Did you mean.** "Did you mean" (:func:`did_you_mean`) compares the job with the mapping's job patterns
  (``difflib``), those whose namespace pattern matches first.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from fnmatch import fnmatchcase

from coordinator.core.lineage.mapping import LineageJob

#: **Bounded**: enough for every model of a large dbt project teed to the receiver; small enough for a status answer.
MAX_IGNORED = 100
#: **Bounded**: real job names are short (a dbt model's is ~40 characters); longer ones are cut, never refused.
MAX_NAME = 500
#: **Did you mean**: dbt's job names share their prefix and suffix (``jaffle.main.jaffle.{model}.build.run``), so two
#: different models score 0.85 and a dropped or swapped letter 0.97-0.99: 0.9 finds the typo, not the neighbour model.
CLOSE_CUTOFF = 0.9


@dataclass(frozen=True, slots=True)
class IgnoredJob:
    """One job the receiver answered ``ignored`` for, and how often (**Bounded**)."""

    namespace: str
    job: str
    count: int
    first_seen: datetime
    last_seen: datetime
    #: Why: no entry matches, or the entry's node is not in the graph (``lineage.mapping``'s **The node**).
    why: str

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.job}"


class IgnoredJobs:
    """**Bounded**' bounded memory. One writer (the receiver's event loop); :meth:`recent` may run in another thread
    (the metrics scrape): it reads a snapshot taken in one step."""

    def __init__(self, limit: int = MAX_IGNORED) -> None:
        self.limit = limit
        self._jobs: OrderedDict[tuple[str, str], IgnoredJob] = OrderedDict()

    def note(self, namespace: str, job: str, why: str, now: datetime) -> bool:
        """Count one ignored event of (namespace, job) at ``now``; True when the pair was not remembered before."""
        key = (namespace[:MAX_NAME], job[:MAX_NAME])
        known = self._jobs.pop(key, None)
        if known is None:
            self._jobs[key] = IgnoredJob(key[0], key[1], 1, now, now, why)
        else:
            self._jobs[key] = replace(known, count=known.count + 1, last_seen=now, why=why)
        while len(self._jobs) > self.limit:
            self._jobs.popitem(last=False)
        return known is None

    def recent(self, still_ignored: Callable[[str, str], bool]) -> tuple[IgnoredJob, ...]:
        """**Still ignored**: the remembered jobs ``still_ignored(namespace, job)`` says are ignored now, newest
        first."""
        snapshot = tuple(self._jobs.values())
        return tuple(job for job in reversed(snapshot) if still_ignored(job.namespace, job.job))


def did_you_mean(job: IgnoredJob, mapping: Sequence[LineageJob], n: int = 3) -> tuple[LineageJob, ...]:
    """**Did you mean**: the entries whose job pattern is close to ``job``'s name, closest first."""
    same = [entry for entry in mapping if fnmatchcase(job.namespace, entry.namespace)]
    for candidates in (same, list(mapping)):
        patterns = list(dict.fromkeys(entry.job for entry in candidates))
        close = difflib.get_close_matches(job.job, patterns, n=n, cutoff=CLOSE_CUTOFF)
        if close:
            return tuple(next(e for e in candidates if e.job == pattern) for pattern in close)
    return ()
