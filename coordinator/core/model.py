"""Values shared by every layer: run states, node ids, partitions, etcd keys and the records stored under them.

Rules:
- **Pure** and synchronous: stdlib and pydantic only, no I/O, no clock (callers pass timestamps in).
- **Public key layout.** The key layout here is a public contract documented in ``docs/keys.md``; changing it is a
  breaking change.
- **UTC partitions.** A time partition is a logical date in UTC rendered ``YYYY-MM-DDTHH:MM:SSZ``; every writer and
  reader goes through :func:`canonical_partition`, so ``2026-01-01T00:00:00+00:00`` and ``2026-01-01T00:00:00Z`` are
  one partition. A partition may also be a segment or a time and a segment (``coordinator.core.partition``).
- **Never raise on parse.** Records ignore unknown fields (other teams' writers may add their own) and never raise on
  parse: callers get ``None`` plus a reason and keep going.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coordinator.core.partition import SEGMENT_SEP, is_partition, segment_problem
from coordinator.core.run_order import comes_later

#: Airflow's own characters for dag ids (airflow.utils.helpers.KEY_REGEX); instance names follow the same rule.
NAME_CHARS = r"[A-Za-z0-9_.-]+"
#: A whole name: ``\Z``, not ``$`` (which also matches before a trailing newline, so ``"a\n"`` passed), and never
#: ``.`` or ``..``, which are path segments: httpx removes dot segments from REST paths, so a DAG named ``..`` would
#: address another resource of Airflow's API, and the etcd key ``runs/../x`` would read as a different key elsewhere.
NAME_RE = re.compile(rf"\A(?!\.\.?\Z){NAME_CHARS}\Z")
#: Separates instance and dag id in a qualified reference (``team_a/01_pipeline``). ``/`` is outside NAME_RE, so a
#: qualified reference can never be mistaken for a dag id, and it mirrors the etcd key layout.
NODE_SEP = "/"
DEFAULT_INSTANCE = "default"
DEFAULT_PREFIX = "/coordinator"
PARTITION_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class RunState(StrEnum):
    """State of one DAG run attempt for one partition. Only SUCCESS satisfies a dependency."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """True while the attempt is not finished (queued or running)."""
        return self in (RunState.QUEUED, RunState.RUNNING)


class NodeId(tuple[str, str, str]):
    """A DAG in one Airflow instance: the unit the dependency graph is made of.

    A tuple ``(instance, dag_id, qualified)`` underneath, not a dataclass: a (NodeId, partition) pair is a dict key
    of the view, looked up millions of times in a pass over a big store, and a tuple subclass hashes and compares in
    C (a Python ``__hash__`` was 2.5 million calls per 100,000 DAG-partitions loaded and planned). The third item is
    derived from the other two, so equality, hashing and ordering are those of (instance, dag_id) as before; the
    fields are read through the properties below, never by index.
    """

    __slots__ = ()

    def __new__(cls, instance: str, dag_id: str) -> Self:
        return tuple.__new__(cls, (instance, dag_id, f"{instance}{NODE_SEP}{dag_id}"))

    if TYPE_CHECKING:

        @property
        def instance(self) -> str: ...

        @property
        def dag_id(self) -> str: ...

        @property
        def qualified(self) -> str:
            """Always ``instance/dag_id``, for machine-readable output (and the ledger's input names)."""
            ...

    else:
        # C-level getters (a Python property costs a call each; ``qualified`` is read per upstream per decision).
        instance = property(itemgetter(0))
        dag_id = property(itemgetter(1))
        qualified = property(itemgetter(2), doc="Always ``instance/dag_id``, for machine-readable output.")

    def __reduce__(self) -> tuple[type[NodeId], tuple[str, str]]:
        return (type(self), (self[0], self[1]))

    def __repr__(self) -> str:
        return f"NodeId(instance={self[0]!r}, dag_id={self[1]!r})"

    def __str__(self) -> str:
        return self[1] if self[0] == DEFAULT_INSTANCE else self[2]

    @classmethod
    def parse(cls, ref: str, default_instance: str = DEFAULT_INSTANCE) -> Self:
        """Parse ``dag_id`` or ``instance/dag_id``; raise ValueError naming what is wrong."""
        instance, sep, dag_id = ref.rpartition(NODE_SEP)
        if not sep:
            instance = default_instance
        if not NAME_RE.match(dag_id):
            raise ValueError(f"invalid dag id {dag_id!r}: use letters, digits, '_', '.', '-'")
        if not NAME_RE.match(instance):
            raise ValueError(f"invalid instance name {instance!r}: use letters, digits, '_', '.', '-'")
        return cls(instance, dag_id)


def canonical_partition(value: str | datetime) -> str:
    """Return the canonical partition string for a logical date; raise ValueError if it is not one.

    Accepts ISO 8601 with an offset or ``Z``, or a bare date (midnight UTC). Naive date-times are refused because
    guessing a zone would silently join the wrong partitions.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            text += "T00:00:00+00:00"
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"invalid partition {value!r}: expected a UTC logical date like 2026-01-01T00:00:00Z"
            ) from exc
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"partition {value!s} has no time zone: add 'Z' or an offset such as +00:00")
    if dt.microsecond:
        raise ValueError(f"partition {value!s} has sub-second precision; partitions are whole seconds")
    return dt.astimezone(UTC).strftime(PARTITION_FORMAT)


def any_partition(value: str) -> str:
    """The canonical partition a user or a writer means (``--partition``): a time in any form
    :func:`canonical_partition` reads (a bare date, an offset), a segment (``eu``), or a time and a segment
    (``2026-01-01~eu``, the time in any of those forms); ValueError naming the three forms otherwise."""
    text = value.strip()
    if is_partition(text):
        return text
    time, sep, segment = text.partition(SEGMENT_SEP)
    try:
        canonical = canonical_partition(time)
    except ValueError as exc:
        if sep or segment_problem(text) is None or text[:4].isdigit():
            raise  # a date written wrong: its own error says what is wrong with it
        raise ValueError(
            f"invalid partition {value!r}: expected a UTC logical date like 2026-01-01T00:00:00Z, a segment like eu, "
            f"or both like 2026-01-01T00:00:00Z~eu ({segment_problem(text)})"
        ) from exc
    if not sep:
        return canonical
    if (problem := segment_problem(segment)) is not None:
        raise ValueError(f"invalid partition {value!r}: {problem}")
    return f"{canonical}{SEGMENT_SEP}{segment}"


def partition_datetime(partition: str) -> datetime:
    """The aware UTC datetime of a canonical partition string: a time, or the time of a time-and-segment partition
    (``coordinator.core.partition``); ValueError for a segment, which has no time."""
    if SEGMENT_SEP in partition:
        partition = partition.partition(SEGMENT_SEP)[0]
    return datetime.strptime(partition, PARTITION_FORMAT).replace(tzinfo=UTC)


def is_canonical_partition(text: str) -> bool:
    """Whether ``text`` is a canonical **time** (the retention floor, the first-adoption date); a key's partition may
    also be a segment: :func:`coordinator.core.partition.is_partition`."""
    try:
        return canonical_partition(text) == text
    except ValueError:
        return False


#: ``RunRecord.run_type`` of a run Airflow marks as a backfill: Airflow 3's ``DagRunType.BACKFILL_JOB`` and Airflow 2's
#: are both ``"backfill"`` (their run ids start ``backfill__``).
BACKFILL_RUN_TYPE = "backfill"


class RunRecord(BaseModel):
    """Value of a run-state key (``{prefix}/runs/{instance}/{dag_id}/{partition}``), written by the pipelines."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state: RunState
    run_id: str = Field(min_length=1)
    clear_number: int = Field(default=0, ge=0)
    updated_at: datetime | None = None
    source: str = "unknown"
    start_date: datetime | None = None
    end_date: datetime | None = None
    #: Airflow's run type (``backfill``, ``scheduled``, ``manual``, ...), optional: a run whose type is
    #: :data:`BACKFILL_RUN_TYPE` explains its partition and what it fans out to below to the trigger budget (semantics
    #: `budget-explained-pass`). Absent (values written before it, or by a writer that does not say): not a backfill.
    run_type: str | None = None
    #: Airflow's ``run_after`` of the run (when it was made to run; a clear keeps it): its place among several runs of
    #: one partition (semantics `newest-run-stands`, ``core/run_order.py``). Absent (Airflow 2, ``mark``, values
    #: written before it, an outside writer that does not say): another run id replaces, as before.
    run_after: datetime | None = None

    @property
    def backfill(self) -> bool:
        return self.run_type == BACKFILL_RUN_TYPE

    def same_attempt_state(self, other: RunRecord) -> bool:
        """True when both describe the same state of the same attempt (a rewrite that must not make a generation)."""
        return (self.state, self.run_id, self.clear_number) == (other.state, other.run_id, other.clear_number)


class TriggerStatus(StrEnum):
    """Life of one intent in the trigger ledger."""

    PENDING = "pending"  # recorded, Airflow call not confirmed yet: completed on restart
    DONE = "done"  # Airflow confirmed the run was created or cleared
    ERROR = "error"  # Airflow refused (400, 404, 403...): retried at retry_at (core/error_backoff.py), shown in status


class TriggerAction(StrEnum):
    CREATE = "create"
    CLEAR = "clear"


class TriggerRecord(BaseModel):
    """Value of a ledger key (``{prefix}/triggers/{instance}/{dag_id}/{partition}``): the last trigger intent.

    ``inputs`` maps qualified upstream node ids to the generation (etcd revision) each one had when the trigger was
    decided; an input from ANOTHER partition than the ledger's (a rollup, a fan-out, an offset: partition grids) is
    keyed ``instance/dag_id@partition`` (:func:`input_key`), so every entry written before grids existed keeps its
    meaning (its own partition). ``intent_rev`` is the revision of the write that recorded the intent; a run-state
    write for the same DAG and partition after it proves the triggered attempt started.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: TriggerStatus
    action: TriggerAction
    run_id: str
    #: Generations are never negative; checked by the schema itself (a Python validator cost a call per entry, a
    #: million of them at start-up on a big store).
    inputs: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    reason: str = ""
    cause_rev: int = 0
    intent_rev: int = 0
    requested_at: datetime | None = None
    done_at: datetime | None = None
    watcher: str = ""
    attempts: int = 0
    last_error: str | None = None
    prior_queued_at: str | None = None
    trigger_count: int = Field(default=1, ge=1)
    #: Semantics `trigger-errors` (``core/error_backoff.py``): on an ``error`` entry, the errors in a row of its intent
    #: and when the leader tries it again; None (left out of the value) on every other entry.
    errors: int | None = None
    retry_at: datetime | None = None
    #: Semantics `trigger-errors`: on an ``error`` entry, the revision since which the DAG's definition the failed
    #: attempt was planned under was active (its activation's ``since``): a definition adopted later is a possible fix,
    #: tried at once. None (left out of the value) on every other entry, and on an error recorded before it existed.
    tried_under: int | None = None
    #: Semantics `permit-retracted`: on a scheduled dependent's done entry whose permit the leader withdrew before its
    #: run started (an input it was granted on is no longer that success: a retraction, a rerun), why; None (left out
    #: of the value) otherwise. The next intent of the partition writes a record without it.
    withdrawn: str | None = None


#: Separates an upstream from its partition in a ledger input key (``@`` is outside NAME_RE and the partition form).
INPUT_PARTITION_SEP = "@"


def input_key(source: NodeId, source_partition: str, partition: str) -> str:
    """The ledger ``inputs`` key of ``source``'s generation in ``source_partition`` for a trigger of ``partition``:
    the qualified id alone when the two partitions are equal (the only form before partition grids existed)."""
    if source_partition == partition:
        return source.qualified
    return f"{source.qualified}{INPUT_PARTITION_SEP}{source_partition}"


#: Separates a DAG from one of its tasks in a ledger input key (``:`` is outside NAME_RE).
INPUT_TASK_SEP = ":"


def task_input_key(source: NodeId, task: str | None, source_partition: str, partition: str) -> str:
    """:func:`input_key` of a task-level input, ``instance/dag_id:task_id[@partition]``; a whole-run input (``task``
    None) keeps the plain form, so ledgers written before task-level edges existed read exactly as before."""
    if task is None:
        return input_key(source, source_partition, partition)
    name = f"{source.qualified}{INPUT_TASK_SEP}{task}"
    return name if source_partition == partition else f"{name}{INPUT_PARTITION_SEP}{source_partition}"


_Record = TypeVar("_Record", bound=BaseModel)


def parse_value(model: type[_Record], raw: bytes) -> tuple[_Record | None, str | None]:
    """A JSON value as ``model``: (value, None), or (None, where and what is wrong). Never raises."""
    try:
        # The schema validator itself: model_validate_json adds a third to each call, a million calls at start-up.
        return model.__pydantic_validator__.validate_json(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return None, f"{where}: {first.get('msg', 'invalid')}"
    except (ValueError, UnicodeDecodeError) as exc:  # pragma: no cover - pydantic wraps most of these
        return None, str(exc)


def parse_run_record(raw: bytes) -> tuple[RunRecord | None, str | None]:
    """Parse a run-state value; return (record, None) or (None, reason). Never raises."""
    return parse_value(RunRecord, raw)


def parse_trigger_record(raw: bytes) -> tuple[TriggerRecord | None, str | None]:
    """Parse a ledger value; return (record, None) or (None, reason). Never raises."""
    return parse_value(TriggerRecord, raw)


def dump_record(record: BaseModel) -> bytes:
    """Serialise a record compactly, omitting unset optional fields so hand-written keys stay short."""
    return json.dumps(record.model_dump(mode="json", exclude_none=True), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Builds and parses every etcd key the coordinator reads or writes (the contract in docs/keys.md)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or "//" in self.prefix:
            raise ValueError(f"invalid prefix {self.prefix!r}: must start with '/' and not end with '/'")

    @property
    def root(self) -> str:
        """Everything the coordinator owns, with the trailing slash (so ``/coord`` never matches ``/coordx``)."""
        return self.prefix + "/"

    @property
    def runs(self) -> str:
        return f"{self.prefix}/runs/"

    @property
    def triggers(self) -> str:
        return f"{self.prefix}/triggers/"

    @property
    def tasks(self) -> str:
        """Task-instance states of the tasks the adopted graph names as upstreams (same value as a run state)."""
        return f"{self.prefix}/tasks/"

    @property
    def config(self) -> str:
        return f"{self.prefix}/config/"

    @property
    def leader(self) -> str:
        return f"{self.prefix}/leader"

    @property
    def watchers(self) -> str:
        """Base of the watchers' lease-bound presence keys: ``{prefix}/watchers/{id}`` (``doctor``, ``status``)."""
        return f"{self.prefix}/watchers/"

    def watcher_key(self, watcher_id: str) -> str:
        return f"{self.watchers}{watcher_id.replace('/', '_')}"

    def run_key(self, node: NodeId, partition: str) -> str:
        return f"{self.runs}{node.instance}/{node.dag_id}/{partition}"

    def trigger_key(self, node: NodeId, partition: str) -> str:
        return f"{self.triggers}{node.instance}/{node.dag_id}/{partition}"

    def task_key(self, node: NodeId, task: str, partition: str) -> str:
        return f"{self.tasks}{node.instance}/{node.dag_id}/{task}/{partition}"

    def parse_task_key(self, key: str) -> tuple[NodeId, str, str] | None:
        """(node, task id, partition) for a well-formed task-state key, else None (the caller reports it)."""
        if not key.startswith(self.tasks):
            return None
        parts = key[len(self.tasks) :].split("/")
        if len(parts) != 4:
            return None
        instance, dag_id, task, partition = parts
        valid = NAME_RE.match(instance) and NAME_RE.match(dag_id) and NAME_RE.match(task)
        if not (valid and is_partition(partition)):
            return None
        return NodeId(instance, dag_id), task, partition

    @property
    def deadlines(self) -> str:
        """Deadline transitions (semantics `deadlines-judged`):
        ``{prefix}/deadlines/{instance}/{dag_id}/{partition}``."""
        return f"{self.prefix}/deadlines/"

    def deadline_key(self, node: NodeId, partition: str) -> str:
        return f"{self.deadlines}{node.instance}/{node.dag_id}/{partition}"

    def parse_deadline_key(self, key: str) -> tuple[NodeId, str] | None:
        return self._split(key, self.deadlines)

    def deadline_level_key(self, node: NodeId, partition: str, level: str) -> str:
        """An escalation level's transition record (semantics `deadline-levels`, ``core.deadline.levels``): one key
        below the partition's, which readers of three-part deadline keys skip (``parse_deadline_key`` returns None)."""
        return f"{self.deadline_key(node, partition)}/{level}"

    def parse_deadline_level_key(self, key: str) -> tuple[NodeId, str, str] | None:
        if not key.startswith(self.deadlines):
            return None
        head, _, level = key.rpartition("/")
        found = self._split(head, self.deadlines)
        if found is None or not NAME_RE.match(level):
            return None
        return found[0], found[1], level

    def config_key(self, name: str) -> str:
        return f"{self.config}{name}"

    @property
    def budgets(self) -> str:
        """The trigger budget's state per instance (semantics `trigger-budget`):
        ``{prefix}/config/budget/{instance}``."""
        return self.config_key("budget/")

    def budget_key(self, instance: str) -> str:
        return f"{self.budgets}{instance}"

    @property
    def no_cascade(self) -> str:
        """Reruns that do not cascade (semantics `no-cascade-once`):
        ``{prefix}/config/no_cascade/{instance}/{dag_id}/{partition}``."""
        return self.config_key("no_cascade/")

    def no_cascade_key(self, node: NodeId, partition: str) -> str:
        return f"{self.no_cascade}{node.instance}/{node.dag_id}/{partition}"

    def parse_no_cascade_key(self, key: str) -> tuple[NodeId, str] | None:
        return self._split(key, self.no_cascade)

    @property
    def flaps(self) -> str:
        """Run states held because they flap (semantics `flap-held`):
        ``{prefix}/config/flaps/{instance}/{dag_id}/{partition}``."""
        return self.config_key("flaps/")

    def flap_key(self, node: NodeId, partition: str) -> str:
        return f"{self.flaps}{node.instance}/{node.dag_id}/{partition}"

    def parse_flap_key(self, key: str) -> tuple[NodeId, str] | None:
        return self._split(key, self.flaps)

    @property
    def lineage(self) -> str:
        """OpenLineage runs as the receiver recorded them (semantics `lineage-once`):
        ``{prefix}/lineage/{instance}/{runId}``."""
        return f"{self.prefix}/lineage/"

    def lineage_key(self, instance: str, run_id: str) -> str:
        return f"{self.lineage}{instance}/{run_id}"

    @property
    def holds(self) -> str:
        """Operators' holds (``core/holds.py``): ``{prefix}/holds/{id}``."""
        return f"{self.prefix}/holds/"

    def hold_key(self, hold_id: str) -> str:
        return f"{self.holds}{hold_id}"

    def parse_hold_key(self, key: str) -> str | None:
        """The hold id of a well-formed hold key, else None."""
        if not key.startswith(self.holds):
            return None
        hold_id = key[len(self.holds) :]
        return hold_id if NAME_RE.match(hold_id) else None

    @property
    def history(self) -> str:
        """The audit trail of operators' actions (``core/holds.py``): ``{prefix}/history/{time}-{id}``, the
        time sortable as text (``history_time``), so a range read from a time on is the trail since then."""
        return f"{self.prefix}/history/"

    def history_key(self, at: datetime, entry_id: str) -> str:
        return f"{self.history}{history_time(at)}-{entry_id}"

    def _split(self, key: str, base: str) -> tuple[NodeId, str] | None:
        if not key.startswith(base):
            return None
        parts = key[len(base) :].split("/")
        if len(parts) != 3:
            return None
        instance, dag_id, partition = parts
        if not (NAME_RE.match(instance) and NAME_RE.match(dag_id) and is_partition(partition)):
            return None
        return NodeId(instance, dag_id), partition

    def parse_run_key(self, key: str) -> tuple[NodeId, str] | None:
        """(node, partition) for a well-formed run-state key, else None (the caller reports it)."""
        return self._split(key, self.runs)

    def parse_trigger_key(self, key: str) -> tuple[NodeId, str] | None:
        return self._split(key, self.triggers)


#: The history key's time: UTC to the microsecond, fixed width, so keys sort by time as text.
HISTORY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def history_time(at: datetime) -> str:
    """``at`` (aware) as the history key's sortable time."""
    return at.astimezone(UTC).strftime(HISTORY_TIME_FORMAT)


def run_id_for(partition: str) -> str:
    """Deterministic Airflow run id of the run the coordinator creates for a partition.

    One per (DAG, partition) because Airflow allows one run per logical date; reruns clear this same run.
    """
    return f"coordinator__{partition}"


_STATE_RANK = {RunState.QUEUED: 0, RunState.RUNNING: 1, RunState.SUCCESS: 2, RunState.FAILED: 2}


def should_replace(old: RunRecord | None, new: RunRecord) -> bool:
    """Whether a writer should overwrite ``old`` with ``new`` (per-run ordering; the rule every writer follows).

    - Rewriting the same state of the same attempt is refused: a success rewritten would be a new generation and
      would rerun every dependent.
    - For the same run id, an older attempt (lower ``clear_number``) never overwrites a newer one, and within one
      attempt a state never goes backwards (a late ``running`` must not hide ``success``). Terminal to the other
      terminal state is allowed: it is a user marking the run success or failed.
    - Of two runs for the same partition the later in the run order stands (semantics `newest-run-stands`,
      :func:`coordinator.core.run_order.comes_later`): an older run never overwrites a newer one's record; where
      either does not say its ``run_after``, a different run id replaces (someone deleted and recreated the run).
    """
    if old is None:
        return True
    if old.same_attempt_state(new):
        return False
    if old.run_id != new.run_id:
        return comes_later(new, old)
    if new.clear_number != old.clear_number:
        return new.clear_number > old.clear_number
    return _STATE_RANK[new.state] >= _STATE_RANK[old.state]
