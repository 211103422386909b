"""The view's facts: the slim run state and ledger entry it keeps per (DAG, partition) (``view.View``).

A module of their own so that both the view and the snapshot's fast path (``core.canonical``, which builds them
straight from a value) can make them without importing each other.

Rules:
- **Slim**: a fact holds only what decisions, the audit and ``status`` read, not the pydantic record; a big store holds
  millions of them.
- **Compact where compiled.** Where the package was built with a C compiler, ``RunFact`` and ``LedgerFact`` are the
  compiled module's compact types (``core/_facts.c``): the same fields, defaults, members and manners as the named
  tuples written here, which they adopt at import (``compact``), in a third to a half of the memory, one allocation a
  fact. Without the module, or with one built from an older source whose fields differ, they are these named tuples.
  Readers see no difference (``tests/test_facts.py`` reads both the same).
- **Pure**: no I/O, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from sys import intern
from typing import TYPE_CHECKING, Any, NamedTuple

from coordinator.core.model import BACKFILL_RUN_TYPE, RunRecord, RunState, TriggerAction, TriggerRecord, TriggerStatus

_ZERO = timedelta(0)


def _utc(stamp: datetime | None) -> datetime | None:
    """``stamp`` with the shared UTC tzinfo when it is UTC: pydantic gives every parsed time its own tzinfo object
    (40 bytes, a million of them on a big store)."""
    if stamp is None or stamp.tzinfo is UTC or stamp.utcoffset() != _ZERO:
        return stamp
    return stamp.replace(tzinfo=UTC)


class RunFact(NamedTuple):
    """The latest run state of one (DAG, partition) and the revision it was written at.

    Slim on purpose (a million of these on a big store): the fields decisions and the audit read, not the pydantic
    record (~1.3 kB each); ``record`` rebuilds one on demand. ``updated_at`` is not kept. A named
    tuple, not a frozen dataclass: as immutable, and built in a third of the time (a frozen dataclass sets each field
    through ``object.__setattr__``), which is a second per million keys at start-up.
    """

    state: RunState
    run_id: str
    clear_number: int
    #: Revision of the write (for a success: the GENERATION of this DAG for this partition).
    rev: int
    #: Read by the audit (``core.audit.audit_record``): who wrote the state, and when the attempt started.
    source: str = "unknown"
    start_date: datetime | None = None
    #: Read by the deadlines (``core.deadline.states``): when a success finished decides on time or late, and the recent
    #: successes' run times are the learned duration.
    end_date: datetime | None = None
    #: The writer's ``updated_at``, kept only when ``start_date`` or (for a finished state) ``end_date`` is missing:
    #: the deadlines' stand-in for the missing time (an outside writer that omits them, docs/keys.md). None for the
    #: plugin's and the audit's writes, which carry both, so the common fact pays only the slot.
    seen: datetime | None = None
    #: Whether Airflow ran it as a backfill (``RunRecord.backfill``): the trigger budget's **Backfills explain
    #: themselves** (``core.budget_allowance``). A bool, not the run type: one shared object per fact.
    backfill: bool = False

    @classmethod
    def of(cls, record: RunRecord, rev: int) -> RunFact:
        # Interned: run ids repeat across the DAGs of a partition, sources across everything.
        start, end = _utc(record.start_date), _utc(record.end_date)
        seen = None
        if start is None or (end is None and not record.state.active):
            seen = _utc(record.updated_at)
        return cls(record.state, intern(record.run_id), record.clear_number, rev, intern(record.source),
                   start, end, seen, record.backfill)  # fmt: skip

    @property
    def started(self) -> datetime | None:
        """When the attempt started: ``start_date``, else the writer's ``updated_at`` for a running state (it was
        running by then); None for a queued one without a start (not started) or without either time."""
        if self.start_date is not None:
            return self.start_date
        return self.seen if self.state is RunState.RUNNING else None

    @property
    def finished(self) -> datetime | None:
        """When a finished attempt ended: ``end_date``, else the writer's ``updated_at`` (it had ended by then: a
        success written after its deadline without ``end_date`` is late); None while active or without either."""
        if self.end_date is not None or self.state.active:
            return self.end_date
        return self.seen

    @property
    def record(self) -> RunRecord:
        """The record as far as the view keeps it (for display and for the writers' rules, which read only these)."""
        return RunRecord.model_construct(
            state=self.state, run_id=self.run_id, clear_number=self.clear_number, source=self.source,
            start_date=self.start_date, end_date=self.end_date, run_type=BACKFILL_RUN_TYPE if self.backfill else None,
        )  # fmt: skip


class LedgerFact(NamedTuple):
    """The last trigger intent recorded for one (DAG, partition).

    A done intent (nearly all of them) is kept slim: what decisions, ``status`` and the page read, with the input
    names shared by every partition of the DAG. An unfinished one (pending, error) keeps its whole record in ``full``:
    completing it rewrites every field (``core/intent.py``), and there are few of them; so does a done one whose
    permit a retraction withdrew (semantics `permit-retracted`), rarer still.
    """

    status: TriggerStatus
    action: TriggerAction
    run_id: str
    #: The recorded inputs as two parallel tuples (``inputs`` rebuilds the dict): the names are interned per DAG.
    input_names: tuple[str, ...]
    input_revs: tuple[int, ...]
    #: mod revision of the ledger key (the CAS guard for the next write).
    mod_rev: int
    recorded_intent_rev: int = 0
    trigger_count: int = 1
    attempts: int = 0
    last_error: str | None = None
    done_at: datetime | None = None
    full: TriggerRecord | None = None

    @classmethod
    def of(cls, record: TriggerRecord, mod_rev: int, names: dict[tuple[str, ...], tuple[str, ...]]) -> LedgerFact:
        """The fact of ``record``; ``names`` interns the input-name tuples (one per DAG and edge set)."""
        keys = tuple(record.inputs)
        keys = names.setdefault(keys, keys)
        return cls(
            record.status, record.action, intern(record.run_id), keys, tuple(record.inputs.values()), mod_rev,
            record.intent_rev, record.trigger_count, record.attempts, record.last_error, _utc(record.done_at),
            None if record.status is TriggerStatus.DONE and record.withdrawn is None else record,
        )  # fmt: skip

    @property
    def withdrawn(self) -> str | None:
        """Semantics `permit-retracted`: the hold of the retraction that withdrew this done intent's permit."""
        return self.full.withdrawn if self.full is not None else None

    @property
    def permit_granted(self) -> bool:
        """A scheduled dependent's permit is granted: the intent is done and no retraction withdrew it (semantics
        `permit-not-run`, `permit-retracted`)."""
        return self.status is TriggerStatus.DONE and self.withdrawn is None

    @property
    def intent_rev(self) -> int:
        """Revision at which the intent was recorded: a state write after it proves the triggered run started."""
        # The first write of an intent cannot know its own revision; every later write of it carries that revision.
        return self.recorded_intent_rev or self.mod_rev

    @property
    def inputs(self) -> dict[str, int]:
        return dict(zip(self.input_names, self.input_revs, strict=True))

    def input(self, name: str) -> int | None:
        """The recorded generation of input ``name`` (None: not recorded), without building the dict."""
        try:
            return self.input_revs[self.input_names.index(name)]
        except ValueError:
            return None

    @property
    def record(self) -> TriggerRecord:
        """The whole record of an unfinished intent; for a done one, the record as far as the view keeps it."""
        if self.full is not None:
            return self.full
        return TriggerRecord.model_construct(
            status=self.status, action=self.action, run_id=self.run_id, inputs=self.inputs,
            intent_rev=self.recorded_intent_rev, trigger_count=self.trigger_count, attempts=self.attempts,
            last_error=self.last_error, done_at=self.done_at,
        )  # fmt: skip


# A named tuple's own helpers, for the compact types (the named tuples' own build a tuple with ``tuple.__new__``).
def _make(cls: type[Any], fields: Iterable[Any]) -> Any:
    return cls(*fields)


def _replace(self: Any, /, **changes: Any) -> Any:
    return type(self)(**{**dict(zip(self._fields, self, strict=True)), **changes})


def _asdict(self: Any) -> dict[str, Any]:
    return dict(zip(self._fields, self, strict=True))


def compact(run: type[RunFact], ledger: type[LedgerFact]) -> tuple[Any, Any]:
    """**Compact where compiled**: the compiled fact types, given the named tuples' defaults and the members written on
    them (properties, methods, ``of``), when the module is built and knows exactly their fields; else ``run`` and
    ``ledger`` themselves."""
    try:
        from coordinator.core import _native
    except ImportError:
        return run, ledger
    for named, compiled in ((run, _native.RunFact), (ledger, _native.LedgerFact)):
        own = {name: member for name, member in vars(named).items()
               if not name.startswith("_") and name not in named._fields}  # fmt: skip
        own.update(_make=classmethod(_make), _replace=_replace, _asdict=_asdict)
        if not _native.adopt(compiled, named._fields, named._field_defaults, own):
            return run, ledger  # built from an older source: its fields are not these
    return _native.RunFact, _native.LedgerFact


#: The named tuples, whichever types are the facts (``tests/test_facts.py`` builds both).
NamedRunFact, NamedLedgerFact = RunFact, LedgerFact
if not TYPE_CHECKING:  # typed as the named tuples, whose fields, members and manners the compact types share
    RunFact, LedgerFact = compact(RunFact, LedgerFact)
