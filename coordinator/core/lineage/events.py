"""OpenLineage events as the receiver reads them (semantics `lineage-events`): parsed, checked, or refused with a
reason.

Rules (semantics `lineage-events`):
- **One event or an array.** A body is one event (``/api/v1/lineage``) or a JSON array of events
  (``/api/v1/lineage/batch``). Each event is judged whole before anything is written: one bad event refuses the body
  (the client does not retry a 4xx, so it must say which event and why).
- **Kind by schemaURL.** What the event's ``schemaURL`` names decides its kind: a ``RunEvent`` (or no fragment: the
  spec's default event) is read below; a ``DatasetEvent`` or ``JobEvent`` is valid OpenLineage with no run in it:
  accepted and ignored. A schemaURL of another spec than OpenLineage's 1.x/2.x is refused: the receiver cannot know what
  it says.
- **What the spec requires.** A run event has what the spec requires (``eventTime`` with its offset, ``producer``,
  ``schemaURL``, ``run.runId`` a UUID, ``job.namespace`` and ``job.name`` non-empty) and an ``eventType`` of the spec's
  six; a missing ``eventType`` (optional in the spec) reads as ``OTHER``: recorded, no state. Facets read:
  ``nominalTime`` (``nominalStartTime``) and ``parent`` (its run's id); every other field and facet is ignored.
- **Names never raw.** Names never reach a key or a log line raw: a namespace or job name with a control character (a
  newline forges a log line) or a ``..`` path segment is refused; the run id must be a UUID (it is a key segment); names
  are bounded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

#: OpenLineage's names in practice (dbt's job names, Spark's namespaces) stay far below this; a key and a log line
#: need a bound.
MAX_NAME_LEN = 1000
#: The spec versions whose RunEvent this reads (**Kind by schemaURL**): ``https://openlineage.io/spec/2-0-2/OpenLineage.json``.
SPEC_RE = re.compile(
    r"^https?://openlineage\.io/spec/(?P<major>\d+)-\d+-\d+/OpenLineage\.json(?:#/(?:\$defs|definitions)/(?P<def>\w+))?$"
)
KNOWN_MAJORS = frozenset({"1", "2"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventType(StrEnum):
    START = "START"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ABORT = "ABORT"
    FAIL = "FAIL"
    OTHER = "OTHER"


class Refusal(Exception):
    """Why a body cannot be accepted (**One event or an array**): ``reason`` a word for the metric, ``detail`` the
    sentence answered."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RunEvent:
    """The parts of one OpenLineage RunEvent the receiver uses (**What the spec requires**)."""

    event_type: EventType
    event_time: datetime
    run_id: str
    namespace: str
    job: str
    producer: str
    #: The ``nominalTime`` facet's start, when sent: the producer's own statement of the run's slot.
    nominal_start: datetime | None = None
    #: The ``parent`` facet's run id, when sent (a dbt model's invocation, an Airflow task's DAG run).
    parent_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed body: its run events in order, and how many valid non-run events it held (**Kind by schemaURL**)."""

    events: tuple[RunEvent, ...]
    other: int = 0


def parse_body(raw: bytes, *, batch: bool) -> Body:
    """**One event or an array**: every event of ``raw`` read, or :class:`Refusal` naming the first bad one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal("invalid_json", f"the body is not JSON: {exc}") from None
    if batch:
        if not isinstance(doc, list):
            raise Refusal("invalid_event", f"a batch is a JSON array of events, got {_kind(doc)}")
        items = doc
    else:
        items = [doc]
    events: list[RunEvent] = []
    other = 0
    for index, item in enumerate(items):
        where = f"event [{index}]" if batch else "the event"
        parsed = read_event(item, where)
        if parsed is None:
            other += 1
        else:
            events.append(parsed)
    return Body(tuple(events), other)


def read_event(doc: Any, where: str = "the event") -> RunEvent | None:
    """**Kind by schemaURL**, **What the spec requires** and **Names never raw**: a RunEvent, None for a valid non-run
    event, or :class:`Refusal`."""
    if not isinstance(doc, dict):
        raise Refusal("invalid_event", f"{where}: expected a JSON object, got {_kind(doc)}")
    schema = _text(doc, "schemaURL", where)
    match = SPEC_RE.match(schema)
    if match is None:
        raise Refusal("invalid_event", f"{where}: schemaURL {schema[:200]!r} is not an OpenLineage spec URL "
                      "(https://openlineage.io/spec/<version>/OpenLineage.json#/$defs/RunEvent)")  # fmt: skip
    if match["major"] not in KNOWN_MAJORS:
        raise Refusal("unknown_spec", f"{where}: OpenLineage spec {match['major']}.x is not one this receiver reads "
                      f"(it reads {', '.join(sorted(KNOWN_MAJORS))}.x)")  # fmt: skip
    kind = match["def"] or "RunEvent"
    event_time = _time(doc, "eventTime", where)
    producer = _text(doc, "producer", where)
    if kind in ("DatasetEvent", "JobEvent"):
        return None
    if kind != "RunEvent":
        raise Refusal("invalid_event", f"{where}: schemaURL names {kind!r}, not a RunEvent, DatasetEvent or JobEvent")
    raw_type = doc.get("eventType", EventType.OTHER.value)
    if not isinstance(raw_type, str) or raw_type not in EventType.__members__:
        allowed = ", ".join(EventType.__members__)
        raise Refusal("invalid_event", f"{where}: eventType {str(raw_type)[:40]!r} is not one of {allowed}")
    run = _object(doc, "run", where)
    job = _object(doc, "job", where)
    run_id = _uuid(run.get("runId"), f"{where}: run.runId")
    namespace = _name(job.get("namespace"), f"{where}: job.namespace")
    name = _name(job.get("name"), f"{where}: job.name")
    facets = run.get("facets") or {}
    if not isinstance(facets, dict):
        raise Refusal("invalid_event", f"{where}: run.facets is {_kind(facets)}, not an object")
    nominal = None
    nominal_facet = facets.get("nominalTime")
    if nominal_facet is not None:
        if not isinstance(nominal_facet, dict):
            raise Refusal("invalid_event", f"{where}: run.facets.nominalTime is {_kind(nominal_facet)}, not an object")
        nominal = _time(nominal_facet, "nominalStartTime", f"{where}: run.facets.nominalTime")
    parent_run_id = None
    parent = facets.get("parent")
    if parent is not None:
        parent_run = parent.get("run") if isinstance(parent, dict) else None
        if not isinstance(parent_run, dict):
            raise Refusal("invalid_event", f"{where}: run.facets.parent has no run object")
        parent_run_id = _uuid(parent_run.get("runId"), f"{where}: run.facets.parent.run.runId")
    return RunEvent(EventType(raw_type), event_time, run_id, namespace, name, producer, nominal, parent_run_id)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _object(doc: dict[str, Any], field: str, where: str) -> dict[str, Any]:
    value = doc.get(field)
    if not isinstance(value, dict):
        raise Refusal("invalid_event", f"{where}: {field} is required (an object), got {_kind(value)}")
    return value


def _text(doc: dict[str, Any], field: str, where: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Refusal("invalid_event", f"{where}: {field} is required (a non-empty string), got {_kind(value)}")
    return value


def _time(doc: dict[str, Any], field: str, where: str) -> datetime:
    text = _text(doc, field, where)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Refusal("invalid_event", f"{where}: {field} {text[:60]!r} is not an ISO 8601 date-time") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise Refusal("invalid_event", f"{where}: {field} {text[:60]!r} has no offset (the spec requires one)")
    return at


def _uuid(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Refusal("invalid_event", f"{where} is required (a UUID), got {_kind(value)}")
    try:
        return str(UUID(value))
    except ValueError:
        raise Refusal("invalid_event", f"{where} {value[:60]!r} is not a UUID") from None


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refusal("invalid_event", f"{where} is required (a non-empty string), got {_kind(value)}")
    if len(value) > MAX_NAME_LEN:
        raise Refusal("invalid_name", f"{where} is {len(value)} characters long (at most {MAX_NAME_LEN})")
    if _CONTROL.search(value):
        raise Refusal("invalid_name", f"{where} {value[:60]!r} holds a control character (a newline?)")
    if ".." in value.split("/"):
        raise Refusal("invalid_name", f"{where} {value[:60]!r} holds a '..' path segment")
    return value
