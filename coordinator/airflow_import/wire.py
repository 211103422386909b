"""The loader's answer as JSON: the estate's interpreter writes a :class:`LoadedFolder`, the CLI reads it back.

Rules:
- **One line after ANSWER.** One JSON document on one line of the child's stdout, after ``ANSWER``: Airflow's own output
  goes to stderr while it loads, and a line something prints at the child's exit cannot be taken for the answer.
- **Codec by type hints.** The codec follows the dataclasses' type hints, so a field added to a fact travels without a
  change here: datetimes as ISO 8601, timedeltas as whole microseconds, enums by value, tuples as lists, ``X | None`` as
  null.
- **Errors as answers.** A load that could not start (no Airflow there, a Python too old) is ``{"error": "..."}``: the
  CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from coordinator.airflow_import.loader import LoadedFolder

_MICROSECOND = timedelta(microseconds=1)
#: What starts the answer's line (**One line after ANSWER**).
ANSWER = "coordinator-import-dags-answer: "


def encode(value: Any) -> Any:
    """A JSON value for a fact (**Codec by type hints**)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value // _MICROSECOND
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    return value


def decode(hint: Any, raw: Any) -> Any:
    """The typed value for ``raw`` (**Codec by type hints**)."""
    if raw is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return decode(inner, raw)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], item) for item in raw)
        return tuple(decode(a, item) for a, item in zip(args, raw, strict=True))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _field_hints(hint)
        return hint(**{name: decode(hints[name], value) for name, value in raw.items() if name in hints})
    if hint is datetime:
        return datetime.fromisoformat(raw)
    if hint is timedelta:
        return timedelta(microseconds=raw)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(raw)
    return raw


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their resolved types, once per class: resolving them (string annotations, compiled and
    evaluated) for each of 80,000 decoded facts cost more than decoding them."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def dumps(loaded: LoadedFolder) -> str:
    return json.dumps(encode(loaded))


def answer_line(stdout: str) -> str | None:
    """The answer's JSON in the child's stdout (**One line after ANSWER**), or None when it wrote none."""
    found = [line[len(ANSWER) :] for line in stdout.splitlines() if line.startswith(ANSWER)]
    return found[-1] if found else None


def loads(text: str) -> LoadedFolder | str:
    """The folder, or the reason the load could not start (**Errors as answers**)."""
    raw = json.loads(text)
    if "error" in raw:
        return str(raw["error"])
    value = decode(LoadedFolder, raw)
    assert isinstance(value, LoadedFolder)
    return value
