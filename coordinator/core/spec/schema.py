"""The JSON Schema (draft 2020-12) of ``dependencies.json``, for editors and other tools.

Rules:
- **From the loader's constants.** Built from the loader's own constants (name pattern, form keys, version); tests keep
  the field lists equal to the loader's, and ``docs/dependencies.schema.json`` (a committed copy) equal to
  :func:`schema_text`.
- **Shape only.** The schema describes shape only. What needs the whole file (reference resolution, ambiguity, declared
  instances, cycles) is checked by :mod:`coordinator.core.spec.loader` alone (through
  :mod:`coordinator.core.spec.resolve`), so ``coordinator validate`` is the authority.
"""

from __future__ import annotations

import json
from typing import Any

from coordinator.core.conditions import Late
from coordinator.core.data_interval import IntervalKind
from coordinator.core.graph import Condition
from coordinator.core.grid import CRON_PRESETS, SegmentMap
from coordinator.core.lineage.mapping import PartitionSource, Slot
from coordinator.core.model import NAME_CHARS, NODE_SEP
from coordinator.core.partition import SEGMENT_MAX
from coordinator.core.spec.deadline import ANCHORS, EXPECTED_BY_FIELDS, LEARNED, MAX_DAY_OFFSET
from coordinator.core.spec.grid import EDGE_FIELDS, MAX_OFFSET, MEMBERS, PARTITION_FIELDS, TASK_RE
from coordinator.core.spec.instances import InstanceKind
from coordinator.core.spec.lineage import LINEAGE_FIELDS, MAX_PATTERN_LEN
from coordinator.core.spec.loader import FORM_KEYS, SPEC_VERSION
from coordinator.core.spec.resolve import MAX_DAG_ID_LEN

_DURATION: dict[str, Any] = {
    "type": "string",
    "pattern": r"^((\d+d)?(\d+h)?(\d+m)?(\d+s)?|P(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?)$",
}
_NAME = NAME_CHARS


def _refs(item: str, description: str) -> dict[str, Any]:
    """One reference or a non-empty list of them."""
    one = {"$ref": f"#/$defs/{item}"}
    return {
        "description": description,
        "oneOf": [one, {"type": "array", "items": one, "minItems": 1, "uniqueItems": True}],
    }


def _defs() -> dict[str, Any]:
    """Every definition of the JSON Schema, by name.

    Long because it is one table: each entry is a definition the schema reference page lists whole, and splitting
    the literal would only scatter what a reader compares side by side."""
    return {
        "name": {
            "description": "An Airflow instance name (same rule as a dag id).",
            "type": "string",
            "pattern": f"^{_NAME}$",
        },
        "dagId": {
            "description": "An Airflow dag id.",
            "type": "string",
            "pattern": f"^{_NAME}$",
            "maxLength": MAX_DAG_ID_LEN,
        },
        "dagRef": {
            "description": "A dag id, or instance/dag_id to name a DAG in another Airflow instance.",
            "type": "string",
            "pattern": f"^({_NAME}{NODE_SEP})?{_NAME}$",
        },
        "edge": {
            "description": "A dependency: a reference, or an object with the reference and how dates map "
            "(offset, shift, member), which task of it counts and whether success or any finish counts. "
            "See docs/dependencies.md.",
            "oneOf": [
                {"$ref": "#/$defs/dagRef"},
                {
                    "type": "object",
                    "properties": dict(
                        zip(
                            EDGE_FIELDS,
                            (
                                {"$ref": "#/$defs/dagRef"},
                                {
                                    "type": "integer",
                                    "minimum": -MAX_OFFSET,
                                    "maximum": MAX_OFFSET,
                                    "description": "Periods of the dependent's grid (grids on both sides).",
                                },
                                {
                                    "type": "string",
                                    "description": "Signed duration: the upstream partition is exactly P + shift "
                                    "(-4h, -5d16h, +30m, -P1DT4H; negative looks back).",
                                    "pattern": r"^[+-]?((\d+d)?(\d+h)?(\d+m)?(\d+s)?|P(\d+D)?(T(\d+H)?(\d+M)?"
                                    r"(\d+S)?)?)$",
                                },
                                {
                                    "description": "One partition of the mapped window: first, last or an index "
                                    "(negative counts from the end); grids on both sides.",
                                    "oneOf": [
                                        {"enum": list(MEMBERS)},
                                        {"type": "integer", "minimum": -MAX_OFFSET, "maximum": MAX_OFFSET},
                                    ],
                                },
                                {
                                    "type": "string",
                                    "description": "An Airflow task id of the upstream: that task instance counts, "
                                    "not the whole run.",
                                    "pattern": TASK_RE.pattern,
                                    "maxLength": 250,
                                },
                                {
                                    "enum": [str(c) for c in Condition],
                                    "description": "success (default) or finished (success or failed).",
                                },
                                {
                                    "enum": [str(m) for m in SegmentMap],
                                    "description": "How segments map: same (each segment needs the same one) or all "
                                    "(every segment of the upstream). Default: same when both DAGs declare segments, "
                                    "all when only the upstream does, a fan-out when only the dependent does.",
                                },
                                {
                                    "type": "integer",
                                    "minimum": 1,
                                    "description": "How many of the edge's mapped upstream partitions are enough "
                                    "(default: all of them), as Airflow's MinimumCount.",
                                },
                                *(
                                    {**value, "description": value["description"].replace("Members", "Partitions")}
                                    for value in _cutoff().values()
                                ),
                            ),
                            strict=True,
                        )
                    ),
                    "required": ["dag"],
                    "additionalProperties": False,
                },
            ],
        },
        **_groups(),
        "partitions": {
            "description": "The DAG's partition grid: partition P covers [P, next cron point); keys stay UTC.",
            "type": "object",
            "properties": dict(
                zip(
                    PARTITION_FIELDS,
                    (
                        {
                            "type": "string",
                            "description": "5-field cron expression, e.g. 0 * * * * (hourly), or a preset: "
                            + ", ".join(CRON_PRESETS)
                            + ".",
                        },
                        {"type": "string", "description": "IANA time zone name; default UTC."},
                        {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "pattern": r"^[A-Za-z0-9_.-]+$",
                                "maxLength": SEGMENT_MAX,
                                "not": {"pattern": r"^\d{4}-\d{2}-\d{2}([T ].*)?$"},
                            },
                            "minItems": 1,
                            "uniqueItems": True,
                            "description": "Segment partitions (eu, us, apac): with cron, a time and a segment; "
                            "without, segments only.",
                        },
                        {
                            "type": "string",
                            "description": "Airflow's key_format of the DAG's partitioned timetable: the DAG is "
                            "triggered with a partition_key, its time written so in the grid's zone.",
                        },
                    ),
                    strict=True,
                )
            ),
            "anyOf": [{"required": ["cron"]}, {"required": ["segments"]}],
            "additionalProperties": False,
        },
        "expectedBy": {
            "description": "When each partition should have succeeded: exactly one of after_end, after_start, at.",
            "type": "object",
            "properties": dict(
                zip(
                    EXPECTED_BY_FIELDS,
                    (
                        {**_DURATION, "description": "Duration after the partition's window end (6h, 1d2h)."},
                        {**_DURATION, "description": "Duration after the partition's window start."},
                        {
                            "type": "string",
                            "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                            "description": "Wall-clock HH:MM in the DAG's grid time zone.",
                        },
                        {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_DAY_OFFSET,
                            "description": "Days after the partition's local date (with at).",
                        },
                        {
                            **_DURATION,
                            "description": "Slack: at_risk when the predicted finish is later than "
                            "the deadline minus this.",
                        },
                        {
                            "oneOf": [_DURATION, {"const": LEARNED}],
                            "description": "Expected run time, or learned from recent successes.",
                        },
                        {"type": "string", "description": "A date: earlier partitions have no deadline."},
                        {**_DURATION, "description": "How long a state must last before its handlers run."},
                        {
                            "type": "boolean",
                            "description": "Alert a state again after a return to on_time in the same partition.",
                        },
                        {
                            "type": "array",
                            "minItems": 1,
                            "description": "Escalation: alert levels, each with its own slack, handlers and record.",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$"},
                                    "slack": {
                                        **_DURATION,
                                        "description": "at_risk for this level when the predicted finish is "
                                        "later than the deadline minus this.",
                                    },
                                    "handlers": _refs("dagRef", "The DAGs this level's transitions run."),
                                },
                                "required": ["name", "handlers"],
                                "additionalProperties": False,
                            },
                        },
                        {
                            "type": "string",
                            "pattern": TASK_RE.pattern,
                            "maxLength": 250,
                            "description": "A task id of this DAG: the deadline is judged on that task's state.",
                        },
                    ),
                    strict=True,
                )
            ),
            "oneOf": [{"required": [anchor]} for anchor in ANCHORS],
            "additionalProperties": False,
        },
        "instance": {
            "description": "An Airflow instance (its URL and credentials belong in the instances settings file), or "
            'with "kind": "external" an instance without an Airflow.',
            "type": "object",
            "properties": {
                "description": {"type": "string"},
                "kind": {
                    "enum": [str(kind) for kind in InstanceKind],
                    "description": "airflow (default) or external: no Airflow; its DAGs' run states are written by "
                    "the OpenLineage receiver or coordinator mark, and none of them may be a dependent.",
                },
            },
            "additionalProperties": False,
        },
        "dag": {
            "description": "One DAG: a root ({}), a success dependent (upstreams) or a failure handler.",
            "type": "object",
            "properties": {
                "upstreams": _refs(
                    "upstream",
                    "Runs for a partition once all of these succeeded for it (an any or at_least group counts as "
                    "one, holding when its rule does).",
                ),
                "on_failure_of": _refs("edge", "Runs for a partition when one of these fails for it."),
                "partitions": {"$ref": "#/$defs/partitions"},
                "instance": {"$ref": "#/$defs/name", "description": "Default: the key's qualifier, or default."},
                "description": {"type": "string"},
                "expected_by": {"$ref": "#/$defs/expectedBy"},
                "on_late_of": _refs("dagRef", "Runs once per deadline state change of one of these (per partition)."),
                "data_interval": {
                    "description": "The data interval of the runs the coordinator triggers: period = [P, next P) on "
                    "the DAG's grid (Airflow 2's cron schedules, CronDataIntervalTimetable; the default with "
                    "partitions.cron and no key_format, and needs a grid), point = [P, P] (CronTriggerTimetable, "
                    "schedule=None).",
                    "enum": [kind.value for kind in IntervalKind],
                },
                "runs": {
                    "enum": ["triggered", "scheduled"],
                    "description": "triggered (default): the coordinator creates its runs; scheduled: Airflow creates "
                    "them on the DAG's timetable and its wait task goes on once the coordinator grants the "
                    "partition's permit.",
                },
            },
            "additionalProperties": False,
            "not": {"required": ["upstreams", "on_failure_of"]},
        },
        "shorthand": {
            "description": "Downstream dag id -> upstream dag id(s); every DAG in the default instance.",
            "type": "object",
            "not": {"anyOf": [{"required": [key]} for key in FORM_KEYS]},
            "propertyNames": {"$ref": "#/$defs/dagId"},
            "additionalProperties": _refs("dagId", "The DAGs this one waits for."),
        },
        "extended": {
            "description": "Instances, failure routing and descriptions.",
            "type": "object",
            "required": ["version", "dags"],
            "properties": {
                "$schema": {"type": "string"},
                "version": {"const": SPEC_VERSION},
                "instances": {
                    "type": "object",
                    "propertyNames": {"$ref": "#/$defs/name"},
                    "additionalProperties": {"$ref": "#/$defs/instance"},
                },
                "dags": {
                    "type": "object",
                    "propertyNames": {"$ref": "#/$defs/dagRef"},
                    "additionalProperties": {"$ref": "#/$defs/dag"},
                },
                "assets": {
                    "description": "Assets shared across instances (semantics rule 16).",
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["asset", "from", "to"],
                        "properties": {
                            "asset": {
                                "type": "string",
                                "minLength": 1,
                                "description": "Asset URI or name; wildcards * ? [...] allowed.",
                            },
                            "from": {"$ref": "#/$defs/name"},
                            "to": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/name"}},
                            "description": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                },
                "openlineage": {
                    "description": "OpenLineage jobs that are nodes (semantics rule 18a): the first entry whose "
                    "namespace and job patterns match a run event names its node.",
                    "type": "array",
                    "items": {"$ref": "#/$defs/lineageJob"},
                },
            },
            "additionalProperties": False,
        },
        "lineageJob": _lineage_job(),
    }


def _lineage_job() -> dict[str, Any]:
    """One ``"openlineage"`` entry (coordinator.core.spec.lineage)."""
    # Control characters (C0, DEL, C1) are what the loader refuses in a pattern.
    pattern = {"type": "string", "minLength": 1, "maxLength": MAX_PATTERN_LEN, "pattern": r"^[^\x00-\x1f\x7f-\x9f]+$"}
    return {
        "description": "Which OpenLineage jobs are one node, and how a run of one becomes a partition.",
        "type": "object",
        "required": ["namespace", "job", "instance"],
        "properties": dict(
            zip(
                LINEAGE_FIELDS,
                (
                    {**pattern, "description": "OpenLineage job namespace; wildcards * ? [...] allowed."},
                    {**pattern, "description": "OpenLineage job name; wildcards * ? [...] allowed."},
                    {"$ref": "#/$defs/name", "description": "The instance the node belongs to (declared)."},
                    {"$ref": "#/$defs/dagId", "description": "The node's dag id; default: the job's own name."},
                    {
                        "enum": [str(p) for p in PartitionSource],
                        "description": "auto (default): nominalTime, else the run's time on the grid; nominal: "
                        "nominalTime only.",
                    },
                    {
                        "enum": [str(s) for s in Slot],
                        "description": "previous (default): the grid interval that ended (Airflow's logical date); "
                        "current: the latest grid point.",
                    },
                    {"$ref": "#/$defs/partitions"},
                    {
                        "type": "string",
                        "pattern": r"^[A-Za-z0-9_.-]+$",
                        "description": "The segment the job's runs stand for (eu): recorded at the time and this "
                        "segment.",
                    },
                    {"type": "string"},
                ),
                strict=True,
            )
        ),
        "additionalProperties": False,
    }


def _groups() -> dict[str, Any]:
    """Condition groups (``coordinator.core.spec.conditions``): an upstream entry is an edge or a group; an ``all``
    group may hold ``any``/``at_least`` groups, those hold edges only (**One level**)."""

    def members(item: str) -> dict[str, Any]:
        return {"type": "array", "items": {"$ref": f"#/$defs/{item}"}, "minItems": 2}

    cutoff = _cutoff()
    edge_groups = {"oneOf": [{"$ref": "#/$defs/edge"}, {"$ref": "#/$defs/anyGroup"}, {"$ref": "#/$defs/atLeastGroup"}]}
    return _group_defs(members, cutoff, edge_groups)


def _cutoff() -> dict[str, Any]:
    """A cutoff's fields, shared by condition groups and edges that count their partitions."""
    return {
        "cutoff": {
            "type": "string",
            "description": "A duration after the partition's start (6h, PT6H), or a time of day in the DAG's zone "
            "(06:00, after the partition's end; daily or coarser grids), from which min members are enough.",
            "pattern": f"^(?:{_DURATION['pattern'][1:-1]}|([01]\\d|2[0-3]):[0-5]\\d(:[0-5]\\d)?)$",
        },
        "min": {"type": "integer", "minimum": 1, "description": "Members enough at the cutoff (default 1)."},
        "late": {
            "enum": [str(late) for late in Late],
            "description": "Members completing the group after a cutoff run: rerun D once (default) or ignore them.",
        },
    }


def _group_defs(members: Any, cutoff: dict[str, Any], edge_groups: dict[str, Any]) -> dict[str, Any]:
    """The group definitions of :func:`_groups`."""
    return {
        "upstream": {
            "description": "An edge, or a condition group of edges (any, all, at_least). See docs/dependencies.md.",
            "oneOf": [
                {"$ref": "#/$defs/edge"},
                {"$ref": "#/$defs/anyGroup"},
                {"$ref": "#/$defs/atLeastGroup"},
                {"$ref": "#/$defs/allGroup"},
            ],
        },
        "anyGroup": {
            "description": "Satisfied when at least one member is.",
            "type": "object",
            "properties": {"any": members("edge")},
            "required": ["any"],
            "additionalProperties": False,
        },
        "atLeastGroup": {
            "description": "Satisfied when at least at_least members are (at most the number of members).",
            "type": "object",
            "properties": {"at_least": {"type": "integer", "minimum": 1}, "of": members("edge"), **cutoff},
            "required": ["at_least", "of"],
            "additionalProperties": False,
        },
        "allGroup": {
            "description": "Every member (the meaning of the upstreams list itself); may hold any/at_least groups.",
            "type": "object",
            "properties": {"all": {"type": "array", "items": edge_groups, "minItems": 2}, **cutoff},
            "required": ["all"],
            "additionalProperties": False,
        },
    }


def json_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "coordinator dependencies.json",
        "description": "Dependencies between Airflow DAGs; reference: docs/dependencies.md.",
        "oneOf": [{"$ref": "#/$defs/shorthand"}, {"$ref": "#/$defs/extended"}],
        "$defs": _defs(),
    }


def schema_text() -> str:
    """The schema as committed in docs/dependencies.schema.json (2-space indent, trailing newline)."""
    return json.dumps(json_schema(), indent=2) + "\n"
