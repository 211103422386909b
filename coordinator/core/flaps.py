"""A run state that flaps, held (semantics `flap-held`): ``{prefix}/config/flaps/{instance}/{dag_id}/{partition}``.

Semantics `newest-run-stands` orders the Airflow writers (the plugin, the audit, the OpenLineage receiver) so that the
record of a partition never goes back to an older run. A writer that does not say its ``run_after`` (an outside
writer, ``coordinator mark``, an Airflow 2 plugin, an older plugin deployed beside a newer watcher, a bug) can still
make a partition's run-state key alternate between a few runs, each success a new generation that reruns every
dependent. This module recognises that, and says what the planner holds while it stands.

Rules:
- **A, B, A.** A success of run A at attempt n is a flap when the same key recorded, within the window, a success of
  A at an attempt n or later, then a success of another run B, and now A again. No Airflow action explains it: a
  run's attempt succeeds once, and only a clear (a new attempt, ``clear_number`` + 1) makes it succeed again. So a
  run that comes back with a new attempt (``mark`` for B in between, then a clear of A) is not a flap.
- **The window.** Only successes seen within ``window`` of the newest count (the watcher's
  ``COORDINATOR_FLAP_WINDOW_S``); older ones are forgotten, so an alternation slower than the window is not held.
- **From the release.** A released record forgets what came before it: only successes written after the release
  (their generation above the released record's revision) count towards the next flap, so a release lets the
  dependents run once, and a flap that goes on is held again at its next A, B, A.
- **Held as an upstream.** While a record stands (not released), every DAG that reads that DAG in that partition
  waits, with the runs and the command that releases it (:meth:`FlapRecord.wait`): nothing is triggered or cleared
  for the flapping generations. The flapping DAG itself is not held (its own runs are Airflow's) and a failure
  handler decides on failures, which never flap here.
- **Pure.** No I/O, no clock (``now`` is an argument), no logging; parse never raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from coordinator.core.model import NodeId, parse_value

#: Runs named in a line; the rest are counted (an alternation names two or three).
NAMED_RUNS = 4


def release_command(node: NodeId, partition: str) -> str:
    """The complete command that releases a flap of ``node`` for ``partition``."""
    return f"coordinator release-flap {node.qualified} -p {partition} --reason 'fixed'"


class FlapRecord(BaseModel):
    """Value of a flap key (docs/keys.md): written by the leading watcher, released by ``coordinator release-flap``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The runs whose successes alternated, in the order they were seen (A, B).
    run_ids: tuple[str, ...] = Field(min_length=1)
    #: The success generations (etcd revisions of the run-state key) of the alternation, oldest first.
    generations: tuple[int, ...] = ()
    #: When the leader saw it, and which watcher.
    detected_at: datetime
    by: str = ""
    #: The window it was judged in, seconds (**The window**).
    window_s: float = 0.0
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def standing(self) -> bool:
        """Held until released (**Held as an upstream**)."""
        return self.released_at is None

    def runs_text(self) -> str:
        shown = ", ".join(self.run_ids[:NAMED_RUNS])
        more = len(self.run_ids) - NAMED_RUNS
        return shown + (f" and {more} more" if more > 0 else "")

    def describe(self, node: NodeId, partition: str) -> str:
        """``status``, ``doctor``: what flapped and how to release it."""
        gens = ", ".join(str(g) for g in self.generations)
        since = self.detected_at.isoformat(timespec="seconds")
        return (f"{node} {partition}: its run state alternated between runs {self.runs_text()} (success generations "
                f"{gens}), which no Airflow run explains; held since {since}: its dependents are not triggered or "
                f"cleared for it until `{release_command(node, partition)}`")  # fmt: skip

    def wait(self, node: NodeId, partition: str) -> str:
        """**Held as an upstream**: the planner's reason for a DAG that reads ``node`` in ``partition``."""
        return (f"{node} for {partition} is held: its run state alternates between runs {self.runs_text()}, which "
                f"no Airflow run explains (semantics flap-held); find the writer that rewrites it, then run "
                f"`{release_command(node, partition)}` (each held run then starts once)")  # fmt: skip


class Flap(NamedTuple):
    """The view's fact of one flap key: the record and the revision it was written at."""

    record: FlapRecord
    rev: int


def parse_flap(raw: bytes) -> tuple[FlapRecord | None, str | None]:
    """The record in ``raw``, or (None, where and what is wrong). Never raises."""
    return parse_value(FlapRecord, raw)


@dataclass(frozen=True, slots=True)
class Seen:
    """One success of a run-state key, as the leader saw it."""

    run_id: str
    clear_number: int
    #: Its generation (the key's mod revision).
    rev: int
    at: datetime


def observe(
    history: Sequence[Seen], seen: Seen, now: datetime, window: timedelta, since_rev: int = 0
) -> tuple[tuple[Seen, ...], tuple[Seen, ...] | None]:
    """``seen`` added to one key's ``history`` (oldest first): the history to keep, and the successes of the flap when
    ``seen`` makes one (**A, B, A**, from the first success of the run that came back), else None. Successes outside
    the window (**The window**) or at or before ``since_rev`` (**From the release**) are dropped; a generation already
    in the history is seen once."""
    kept = [s for s in history if now - s.at <= window and s.rev > since_rev]
    if any(s.rev == seen.rev for s in kept) or seen.rev <= since_rev:
        return tuple(kept), None
    flap: tuple[Seen, ...] | None = None
    for i, old in enumerate(kept):
        if old.run_id != seen.run_id or old.clear_number < seen.clear_number:
            continue
        if any(s.run_id != seen.run_id for s in kept[i + 1 :]):
            flap = (*kept[i:], seen)
            break
    return (*kept, seen), flap


def flap_record(successes: Sequence[Seen], now: datetime, by: str, window: timedelta) -> FlapRecord:
    """The record of a flap ``observe`` found: its runs in the order first seen, its generations."""
    runs: list[str] = []
    for s in successes:
        if s.run_id not in runs:
            runs.append(s.run_id)
    return FlapRecord(
        run_ids=tuple(runs), generations=tuple(s.rev for s in successes), detected_at=now, by=by,
        window_s=window.total_seconds(),
    )  # fmt: skip
