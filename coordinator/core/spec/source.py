"""Reading JSON for the spec loader: problems with a file, a JSON path and a line, duplicate keys, type names.

Rules:
- **Pure**: text in, values and :class:`Problem` values out; nothing here raises on bad input except :func:`decode`,
  which raises :class:`JsonSyntaxError` carrying a ready-made problem.
- **JSON paths.** A JSON path is a tuple of keys and indexes, rendered ``$.dags.etl.upstreams[2]``; a key that is not a
  plain word is rendered in brackets (``$.dags["team_a/etl"]``) because dag ids may contain ``.``; a very long key is
  shortened with ``...``.
- **Duplicate keys** are detected by the ``object_pairs_hook`` (the standard decoder silently keeps the last value, so a
  repeated entry would otherwise vanish without a word); lines are found afterwards by a tokenizer that only ever runs
  on text the decoder already accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

JsonPath = tuple[str | int, ...]
MAX_SHOWN_KEY = 40

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# A JSON token: a string (escapes included), a structural character, or a bare literal/number.
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')

_SYNTAX_HINTS = (
    (
        "Expecting property name",
        "keys must be double-quoted strings and there is no comma after the last entry",
    ),
    ("Illegal trailing comma", "remove the comma after the last entry"),
    ("Expecting ',' delimiter", "a comma is missing between two entries"),
    ("Expecting ':' delimiter", "each key needs a ':' before its value"),
    ("Expecting value", "a value is missing or not JSON (strings need double quotes; no comments allowed)"),
    ("Extra data", "the file must hold one JSON object; remove what follows it"),
    ("Invalid control character", "strings cannot span lines; use \\n"),
    ("Unterminated string", "a closing double quote is missing"),
)


def format_path(path: JsonPath) -> str:
    """``$`` followed by ``.key``, ``["odd key"]`` and ``[index]`` parts."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif len(part) > MAX_SHOWN_KEY:  # a 300-character key would bury the message
            parts.append(f"[{json.dumps(part[: MAX_SHOWN_KEY - 3] + '...')}]")
        elif _PLAIN_KEY_RE.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file: where, what, and how to fix it."""

    path: JsonPath | None
    what: str
    hint: str
    line: int | None = None
    column: int | None = None

    def format(self, source: str) -> str:
        """``file[:line[:col]]: $.path: what — hint`` (the path is left out for syntax errors, which have none)."""
        where = source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        location = f"{where}: {format_path(self.path)}" if self.path is not None else where
        return f"{location}: {self.what} — {self.hint}"


class JsonSyntaxError(ValueError):
    """The text is not JSON; ``problem`` says where and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.what)
        self.problem = problem


class JsonObject(dict[str, Any]):
    """A decoded JSON object that remembers which keys it saw more than once (the last value is the one kept)."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject(pairs)
    seen: set[str] = set()
    duplicates: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in duplicates:
            duplicates.append(key)
        seen.add(key)
    obj.duplicates = tuple(duplicates)
    return obj


def decode(text: str) -> Any:
    """Decode JSON text whose objects are :class:`JsonObject`; raise :class:`JsonSyntaxError` when it is not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_pairs_hook)
    except json.JSONDecodeError as exc:
        hint = next((h for prefix, h in _SYNTAX_HINTS if exc.msg.startswith(prefix)), "fix the JSON syntax")
        problem = Problem(None, f"invalid JSON: {exc.msg}", hint, exc.lineno, exc.colno)
        raise JsonSyntaxError(problem) from exc


def duplicate_keys(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, str]]:
    """(path of the object, key) for every key repeated in any object of a decoded document, in document order."""
    if isinstance(value, JsonObject):
        for key in value.duplicates:
            yield path, key
        for key, item in value.items():
            yield from duplicate_keys(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from duplicate_keys(item, (*path, index))


@dataclass(slots=True)
class _Frame:
    path: JsonPath
    is_object: bool
    key: str = ""
    index: int = 0
    expect_key: bool = False

    def slot(self) -> JsonPath:
        return (*self.path, self.key if self.is_object else self.index)


def value_lines(text: str) -> dict[JsonPath, list[int]]:
    """Line of every value in JSON text the decoder accepted, by path; a repeated key has several lines."""
    lines: dict[JsonPath, list[int]] = {}
    stack: list[_Frame] = []
    line, scanned = 1, 0
    for match in _TOKEN_RE.finditer(text):
        line += text.count("\n", scanned, match.start())
        scanned = match.start()
        token = match.group()
        top = stack[-1] if stack else None
        if token in ("}", "]"):
            stack.pop()
        elif top is not None and token == ",":
            top.expect_key = top.is_object
            top.index += 1
        elif top is not None and token == ":":
            top.expect_key = False
        elif top is not None and top.expect_key:
            top.key = json.loads(token)
        else:
            path = top.slot() if top is not None else ()
            lines.setdefault(path, []).append(line)
            if token in ("{", "["):
                stack.append(_Frame(path, is_object=token == "{", expect_key=token == "{"))
    return lines


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
