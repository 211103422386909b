"""What the docs claim about the product is checked against the product: the reverse of "every command a guide shows is
run". A page may only quote a command the CLI has, a setting something reads, a log event the code writes, and the
pages on limits and comparisons may not call missing a capability the CLI or the schema has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from coordinator.cli.app import app
from coordinator.cli.entry import load_commands
from coordinator.core.spec.schema import json_schema
from coordinator.runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
#: Where a setting, an option name or a log event may be defined: the package, the chart, the launchers, the example
#: DAGs (the watcher DAG reads its own schedule) and the test-suite's knobs.
SOURCES = ("coordinator", "charts", "devtools", "dags", "tests/support")


def _text(folders: tuple[str, ...], suffixes: tuple[str, ...]) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8")
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*"))
        if path.is_file() and path.suffix in suffixes
    )


SOURCE = _text(SOURCES, (".py", ".yaml", ".tpl", ".json", ".txt")) + (ROOT / "Makefile").read_text(encoding="utf-8")
CODE = _text(("coordinator",), (".py",))


def _commands() -> dict[str, set[str]]:
    """Each command of the CLI and its subcommands (``plan rerun``, ``lineage serve``)."""
    load_commands()
    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    return {name: set(getattr(command, "commands", {}) or {}) for name, command in commands.items()}


def _code_lines(text: str) -> list[str]:
    """Inline code spans and the lines of shell blocks: where a page tells a reader what to type."""
    spans = re.findall(r"`([^`\n]+)`", text)
    blocks = re.findall(r"```(?:console|bash|sh|shell)\n(.*?)```", text, re.DOTALL)
    return [s.strip() for s in spans] + [line.strip() for block in blocks for line in block.splitlines()]


def test_every_coordinator_command_a_page_quotes_exists() -> None:
    """Every `coordinator X` (and `coordinator X Y` of a command group) in a code span or shell block is a command of
    the CLI."""
    commands = _commands()
    wrong = []
    for page in PAGES:
        for line in _code_lines(page.read_text(encoding="utf-8")):
            for match in re.finditer(r"(?:^|\$ |&& |; |\| )coordinator ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", line):
                name, sub = match.group(1), match.group(2)
                if name not in commands:
                    wrong.append(f"{page.relative_to(ROOT)}: coordinator {name}")
                elif commands[name] and sub is not None and sub not in commands[name]:
                    wrong.append(f"{page.relative_to(ROOT)}: coordinator {name} {sub}")
    assert wrong == []


def _setting_exists(name: str, fields: set[str], options: set[str]) -> bool:
    """A watcher setting (``Settings``' fields), a plugin or page option (``COORDINATOR_`` + its quoted option name),
    or a variable read by name somewhere in the sources."""
    return name in fields or name.removeprefix("COORDINATOR_").lower() in options or name in SOURCE


def test_every_setting_a_page_quotes_is_read_by_something() -> None:
    """Every `COORDINATOR_*` variable a page names is a watcher setting, a plugin option or read by name in the
    sources."""
    fields = {f"COORDINATOR_{name.upper()}" for name in Settings.model_fields}
    options = set(re.findall(r"[\"']([a-z][a-z0-9_]*)[\"']", CODE))
    wrong = sorted(
        {
            f"{page.relative_to(ROOT)}: {name}"
            for page in PAGES
            for name in re.findall(r"(?<![A-Z_])COORDINATOR_[A-Z0-9_]*[A-Z0-9]", page.read_text(encoding="utf-8"))
            if not _setting_exists(name, fields, options)
        }
    )
    assert wrong == []


def _event_exists(event: str) -> bool:
    """A log event the code writes: literally (``"name.event key=...``), or through a format of the family
    (``"%s.failed ...`` with a controller or index named ``"name"``)."""
    if re.search(rf"[\"']{re.escape(event)}[ \"']", CODE):
        return True
    prefix, _, suffix = event.partition(".")
    family = re.search(rf"[\"']%s\.{re.escape(suffix)}[ \"']", CODE)
    return family is not None and re.search(rf"[\"']{re.escape(prefix)}[\"']", CODE) is not None


def test_every_log_line_a_page_quotes_is_one_the_code_writes() -> None:
    """Every log line a page quotes (`event.name key=...`) names an event the code logs."""
    wrong = sorted(
        {
            f"{page.relative_to(ROOT)}: {event}"
            for page in PAGES
            for line in _code_lines(page.read_text(encoding="utf-8"))
            for event in re.findall(r"(?:^|/ )([a-z][a-z_]*\.[a-z][a-z_]*) [a-z_]+=", line)
            if not _event_exists(event)
        }
    )
    assert wrong == []


@dataclass(frozen=True)
class Capability:
    """A capability the product has (``has``: checked against the CLI or the schema) and the phrases that would say it
    is missing."""

    name: str
    has: Callable[[], bool]
    denials: tuple[str, ...]


def _schema_mentions(word: str) -> bool:
    return f'"{word}"' in str(json_schema()).replace("'", '"')


def _option(command: str, option: str) -> bool:
    load_commands()
    group = typer.main.get_command(app)
    params = getattr(group, "commands", {})[command].params
    return any(option in getattr(param, "opts", ()) for param in params)


CAPABILITIES = (
    Capability("any-of groups", lambda: _schema_mentions("any"), (r"no any-of", r"no any of")),
    Capability("N-of-M groups", lambda: _schema_mentions("at_least"), (r"no N-of-M", r"no \(?`?MinimumCount`?")),
    Capability(
        "cutoffs",
        lambda: _schema_mentions("cutoff"),
        (r"no cutoff", r"no \"run with what has arrived", r"no 'run with what has arrived"),
    ),
    Capability(
        "rerun without cascade",
        lambda: _option("rerun", "--no-cascade"),
        (r"no \"rerun without cascade\"", r"rerun always cascades"),
    ),
    Capability("retract", lambda: "retract" in _commands(), (r"not retracted", r"cannot be retracted")),
    Capability(
        "partitions that are no logical date",
        lambda: _schema_mentions("segments") and _schema_mentions("key_format"),
        (
            r"only runs with a logical date",
            r"a partition is a logical date in UTC\. Runs",
            r"neither release nor be released",
        ),
    ),
    Capability(
        "counting an edge's partitions",
        lambda: _schema_mentions("at_least") and "at_least" in str(json_schema()["$defs"]["edge"]),
        (r"A partition grid waits for every upstream partition in its window, and", r"all upstreams only"),
    ),
    Capability(
        "holds of part of the graph",
        lambda: "hold" in _commands(),
        (r"no hold of part of the graph", r"nothing pauses one branch"),
    ),
)


@pytest.mark.parametrize("capability", CAPABILITIES, ids=lambda c: c.name)
def test_limits_and_comparison_call_no_capability_missing(capability: Capability) -> None:
    """The product has the capability, and neither limits.md nor comparison.md says it is missing."""
    assert capability.has()
    denied = [
        f"{page.name}: {pattern}"
        for page in (ROOT / "docs" / "explanation" / "limits.md", ROOT / "docs" / "explanation" / "comparison.md")
        for pattern in capability.denials
        if re.search(pattern, " ".join(page.read_text(encoding="utf-8").split()), re.IGNORECASE)
    ]
    assert denied == []
