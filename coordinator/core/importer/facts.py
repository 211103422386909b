"""What ``coordinator import-dags`` learned from a DAGs folder: typed facts in, typed findings out.

Rules:
- **Airflow stays in the adapter.** The Airflow adapter (``coordinator.airflow_import``) is the only place that looks at
  Airflow objects; it turns them into these values, so the translation (:mod:`coordinator.core.importer.translate` and
  its helpers) is pure and testable without Airflow.
- **Aware UTC dates.** Dates are aware UTC datetimes. A date function (``execution_date_fn``, or a delta) is known only
  through :class:`DateSample` values: what the sensor's own code returned for a run of its DAG at a sample partition.
- **Every fact has an origin.** Every fact carries its :class:`Origin` (file:line of the call that created it), so every
  finding can point at the line a reviewer has to read.
- **Job sensors.** A sensor that polls another system's job (dbt Cloud, Glue, EMR, Spark on Kubernetes...) is a
  :class:`LinkFact` of kind ``JOB`` with a :class:`JobFact`: the arguments that name the job or its run, each as written
  (a literal, a template, another task's output), never rendered: their run-time value is not the job's name.
- **Counted rollups.** A rollup whose wait policy fires on N keys of its window (``MinimumCount``) over an asset that
  several DAGs produce, each exactly one key of every window and no two the same key, waits for N of those DAGs: it
  is known by each producer's samples (:class:`ProducerSamples`) and the N (``need``).
- **Segments.** A partitioned consumer whose keys are names, not times (``AllowedKeyMapper``, a rollup of a
  ``SegmentWindow`` onto a ``FixedKeyMapper`` key), is known by its own segments and the segments its mapper needs of
  the producer (``AssetMapping.segments`` / ``upstream_segments``), never by samples: Airflow's mapper is asked on each
  of those names.
- **Asset conditions.** An asset schedule's condition is kept as Airflow nests it (:class:`AssetCondition`, ``&`` and
  ``|`` over assets), for the translation to decide what maps onto condition groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    """Where a DAG or a task was created: a file (relative to the DAGs folder when inside it) and a line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


class ScheduleKind(StrEnum):
    CRON = "cron"
    #: A fixed interval (``timedelta``) from the start date.
    DELTA = "delta"
    #: ``schedule=None``: runs only when triggered.
    NONE = "none"
    #: An asset (dataset) schedule.
    ASSETS = "assets"
    #: ``@once``, ``@continuous``, events, several crons, a relativedelta, a custom timetable.
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class DateSample:
    """For the run of the sensor's DAG at ``partition``, the sensor waits for the upstream at ``dates``."""

    partition: datetime
    dates: tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class ProducerSamples:
    """A counted rollup (**Counted rollups**): for the consumer's run at each sample date, the one run of producer
    ``dag_id`` its window holds."""

    dag_id: str
    samples: tuple[DateSample, ...]


@dataclass(frozen=True, slots=True)
class AssetMapping:
    """How an Airflow 3.2+ partitioned consumer (``PartitionedAssetTimetable``) maps one asset's partition keys.

    Known by samples Airflow's own mapper computed: for the consumer's run at its partition date, the producer runs
    (partition dates) it waits for. The identity mapper has none (equal dates).
    """

    uri: str
    #: The mapper as written, for messages: ``StartOfDayMapper``, ``RollupMapper(StartOfDayMapper, DayWindow)``.
    mapper: str
    samples: tuple[DateSample, ...] = ()
    #: The temporal mapper whose periods the consumer's partition dates are (``StartOfDayMapper``) and its zone.
    period: str | None = None
    timezone: str = "UTC"
    #: Why this mapping is no edge (merges several producer runs without a rollup, a wait policy, a fan-out...).
    problem: str | None = None
    #: **Counted rollups**: how many of ``producers`` the wait policy needs, and each producer's samples.
    need: int | None = None
    producers: tuple[ProducerSamples, ...] = ()
    #: The wait policy as written (``MinimumCount(2)``), for messages.
    policy: str | None = None
    #: A rollup with ``MinimumCount`` over one producer's window: how many of the window's runs suffice (an edge's
    #: ``at_least``); None waits for all of them.
    at_least: int | None = None
    #: **Segments**: the consumer's own segments (its partition keys), the producer's segments this mapping reads,
    #: and the edge's segment rule when it is not the default (``"all"``: every producer segment to one key).
    segments: tuple[str, ...] | None = None
    upstream_segments: tuple[str, ...] | None = None
    segment_rule: str | None = None
    #: The consumer's partition key format this mapping gives (a temporal mapper's ``output_format``), or None.
    key_format: str | None = None

    def dates(self) -> tuple[datetime, ...]:
        """Every consumer partition date Airflow's mapper gave, for one or for several producers."""
        return tuple(s.partition for s in self.samples) + tuple(s.partition for p in self.producers for s in p.samples)


class ConditionOp(StrEnum):
    """A node of an asset condition (Airflow's ``AssetAll`` is ``&``, ``AssetAny`` is ``|``)."""

    ASSET = "asset"
    ALL = "all"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class AssetCondition:
    """An asset schedule's condition as Airflow's objects say (**Asset conditions**): one asset (``uri``), or all or
    any of ``items``, nested as written."""

    op: ConditionOp
    uri: str | None = None
    items: tuple[AssetCondition, ...] = ()

    def uris(self) -> tuple[str, ...]:
        """Every asset of the condition, once each, in the order written."""
        if self.uri is not None:
            return (self.uri,)
        return tuple(dict.fromkeys(u for item in self.items for u in item.uris()))

    def text(self) -> str:
        """As a DAG file writes it: ``(a | b)``, ``a & (b | c)``."""
        if self.uri is not None:
            return self.uri
        return f" {'&' if self.op is ConditionOp.ALL else '|'} ".join(
            item.text() if item.uri is not None else f"({item.text()})" for item in self.items
        )


@dataclass(frozen=True, slots=True)
class ScheduleFact:
    """A DAG's timetable as the adapter read it."""

    kind: ScheduleKind
    #: The timetable's class name (``CronTriggerTimetable``...), for messages.
    timetable: str
    #: What the DAG file wrote (``@daily``, ``0 5 * * *``, ``6:00:00``), for messages and to keep presets readable.
    written: str = ""
    #: CRON: the 5-field expression Airflow resolved; DELTA: None.
    cron: str | None = None
    #: CRON: the zone the cron is read in (the start date's zone): an IANA name, or a fixed offset such as ``+02:00``.
    timezone: str | None = None
    #: DELTA: the interval and the first point (the start date, UTC).
    delta: timedelta | None = None
    start: datetime | None = None
    #: A ``CronTriggerTimetable(..., interval=...)``'s interval (None when zero): its run of P covers
    #: ``[P - interval, P]``, which no ``data_interval`` of a triggered run can say.
    trigger_interval: timedelta | None = None
    #: ASSETS: the asset URIs the DAG waits for, all of them (None when the condition is not a plain AND).
    assets: tuple[str, ...] | None = None
    #: Why the schedule cannot be a grid (OTHER, or an asset condition with OR / aliases).
    problem: str | None = None
    #: ASSETS of a ``PartitionedAssetTimetable``: each asset's partition mapping, in ``assets`` order.
    mappings: tuple[AssetMapping, ...] = ()
    #: ASSETS: the whole condition (**Asset conditions**), also when it is no plain AND (None: an alias, a custom one).
    condition: AssetCondition | None = None
    #: Airflow 3.2+: the strftime format of the DAG's time partition keys (a ``CronPartitionTimetable``'s
    #: ``key_format``, a temporal mapper's ``output_format``); the DAG is then triggered with its ``partition_key``.
    key_format: str | None = None
    #: Airflow 3.2+: the DAG's partition keys are decided by its tasks at run time (``PartitionedAtRuntime``).
    runtime_keys: bool = False

    def mapping(self, uri: str) -> AssetMapping | None:
        return next((m for m in self.mappings if m.uri == uri), None)


@dataclass(frozen=True, slots=True)
class DagFact:
    """One DAG of the folder."""

    dag_id: str
    origin: Origin
    schedule: ScheduleFact
    #: Task group id -> the ids of the tasks inside it (for ``external_task_group_id``).
    task_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: (task id, asset URI) for every outlet: who produces which asset.
    outlets: tuple[tuple[str, str], ...] = ()
    task_ids: tuple[str, ...] = ()
    #: Tasks Airflow's scheduler marks success without running them (an ``EmptyOperator``, or a subclass, without
    #: ``on_execute_callback``, ``on_success_callback``, inlets or outlets): no plugin code records them.
    not_run: tuple[str, ...] = ()
    #: An Airflow 2 SubDAG: the top DAG whose ``SubDagOperator`` runs it (it is no DAG of its own).
    subdag_of: str | None = None

    def group(self, group_id: str) -> tuple[str, ...] | None:
        for gid, tasks in self.task_groups:
            if gid == group_id:
                return tasks
        return None


class LinkKind(StrEnum):
    SENSOR = "ExternalTaskSensor"
    MARKER = "ExternalTaskMarker"
    TRIGGER = "TriggerDagRunOperator"
    #: A sensor polling a job of another system (**Job sensors**): offered as an OpenLineage node, never an edge by
    #: itself.
    JOB = "job sensor"


class ValueKind(StrEnum):
    """How a job sensor's argument was written (**Job sensors**)."""

    LITERAL = "literal"
    #: A Jinja string (``"{{ dag_run.conf['run_id'] }}"``): its value is known only when the task runs.
    TEMPLATE = "template"
    #: Another task's output: an ``XComArg`` (``start.output``) or a template that pulls one (``xcom_pull``).
    XCOM = "xcom"
    #: Not given (None).
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class JobArgument:
    """One argument of a job sensor naming the job or one of its runs (``job_name``, ``run_id``), as written."""

    name: str
    kind: ValueKind
    #: LITERAL: the value; TEMPLATE and XCOM: the text as written (``start.output`` for an XComArg).
    text: str = ""
    #: XCOM: the task of the same DAG whose output it is, and that task's operator class (when it is in the DAG).
    task: str | None = None
    task_class: str | None = None


@dataclass(frozen=True, slots=True)
class JobFact:
    """What a job sensor polls (**Job sensors**): its provider class and the arguments that name the job or the run."""

    #: The provider's class found among the task's classes (``GlueJobSensor``) and the module that class came from.
    sensor: str
    module: str
    #: The task's own class (``MyGlueSensor`` for a subclass; the same as ``sensor`` otherwise).
    task_class: str
    arguments: tuple[JobArgument, ...] = ()

    def argument(self, name: str) -> JobArgument | None:
        return next((a for a in self.arguments if a.name == name), None)


@dataclass(frozen=True, slots=True)
class LinkFact:
    """A cross-DAG operator: a sensor, a marker or a trigger, in DAG ``dag_id``; or a sensor on another system's job."""

    kind: LinkKind
    dag_id: str
    task_id: str
    origin: Origin
    #: The other DAG (the sensor's and marker's ``external_dag_id``, the trigger's ``trigger_dag_id``).
    other_dag: str
    #: SENSOR: ``external_task_id(s)``; MARKER: its ``external_task_id``; None = the whole DAG run.
    tasks: tuple[str, ...] | None = None
    task_group: str | None = None
    allowed_states: tuple[str, ...] = ("success",)
    failed_states: tuple[str, ...] = ()
    skipped_states: tuple[str, ...] = ()
    deferrable: bool = False
    #: SENSOR: "same" (no delta, no function), "delta" or "function".
    date_rule: str = "same"
    delta: timedelta | None = None
    #: SENSOR: what the sensor's own date resolution returned on sample partitions of its DAG.
    samples: tuple[DateSample, ...] = ()
    #: Why the dates could not be evaluated (the function raised, returned no dates...), or None.
    date_error: str | None = None
    #: TRIGGER / MARKER: the logical date template as written (None: the operator's default).
    logical_date: str | None = None
    #: TRIGGER: the direct upstream tasks of the trigger task and its trigger rule.
    upstream_tasks: tuple[str, ...] = ()
    trigger_rule: str = "all_success"
    wait_for_completion: bool = False
    #: JOB: the job it polls (**Job sensors**); ``other_dag`` is then "" (it names no DAG).
    job: JobFact | None = None


class FindingKind(StrEnum):
    #: A dependency the file cannot express: no edge was written for it (``--strict`` exits 1).
    INEXPRESSIBLE = "cannot express"
    #: A sensor that provably never waits for what it should (never satisfied, or satisfied by an old run).
    BUG = "sensor bug"
    #: Translated, but a reviewer should know (a marker covered by a sensor, a trigger to remove...).
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    origin: Origin
    #: ``dag.task`` (or the dag id for a DAG-level finding).
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.subject}: {self.message}"
