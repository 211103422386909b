"""Every ``coordinator ...`` command the package prints as a fix (in ``why``, ``status``, ``doctor`` and every other
message) is complete: it parses with the real CLI parser, required arguments and options included.

The commands are collected from the source: each string literal (f-strings with their ``{...}`` parts, implicit
concatenations joined, docstrings left out: they are for readers of the code) is searched for `` `coordinator ...` ``
in backticks, and for un-backticked ``coordinator CMD ARGS`` lines such as the held first adoption's ``next`` steps.
Placeholders (``DAG``, ``PARTITION``, ``{node}``) get sample values; the shape is what is checked.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from coordinator.cli import app
from coordinator.core.actions import Trigger
from coordinator.core.adoption import FirstAdoption, HistoryChoice, HistoryMode
from coordinator.core.model import NodeId, TriggerAction, run_id_for
from tests.support.cli_contract import command_problem

PACKAGE = Path(__file__).resolve().parents[1] / "coordinator"
BACKTICKED = re.compile(r"`(coordinator [^`]*)`")
#: ``coordinator CMD`` followed by options, placeholders or values: stops at the first word of prose. Only when CMD is
#: one of the CLI's commands ("the coordinator reruns X" is prose).
PLAIN = re.compile(
    r"(?<![`\w.-])(coordinator [a-z][a-z-]*(?: (?:--?[a-z][\w-]*|YYYY-MM-DD|[A-Z][A-Z_]*|\{[^}]*\}|\.\.\."
    r"|\d{4}-\d\d-\d\d\S*|\d+[a-z]?|'[^']*'))+)"
)
#: Sample values for the placeholders the messages use.
SAMPLES = {"DAG": "02_pipeline", "PARTITION": "2026-01-01T00:00:00Z", "DATE": "2026-01-01", "YYYY-MM-DD": "2026-01-01",
           "INSTANCE": "default", "NAME": "dbt", "NAMESPACE": "dbt_prod", "DURATION": "30d",
           "TEXT": "given up", "FILE": "tokens.json"}  # fmt: skip
#: Named in prose, not given as a command to type: what writes an external DAG's run state ("written by `coordinator
#: mark`"), and the import-dags command line the user already ran, with its own arguments ("... coordinator
#: import-dags ...").
REFERENCES = {"coordinator mark", "coordinator import-dags ..."}


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of each string literal but docstrings; an f-string's expressions as ``{expr}``."""
    docs = _docstrings(tree)
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner |= {id(v) for v in node.values}
            parts = (v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}" for v in node.values)  # type: ignore[attr-defined]
            yield node.lineno, "".join(str(p) for p in parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs | inner:
            yield node.lineno, node.value


def printed_commands() -> list[tuple[str, str]]:
    """(where, command) of every command the package prints, in file order."""
    found: list[tuple[str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            commands = [m.group(1) for m in BACKTICKED.finditer(text)]
            plain = (m.group(1) for m in PLAIN.finditer(BACKTICKED.sub("", text)))
            commands += [c for c in plain if c.split()[1] in NAMES]
            found += [(f"{relative}:{line}", command.strip()) for command in commands]
    return found


def _args(command: str) -> list[str]:
    """The arguments after ``coordinator``, placeholders filled with sample values."""
    words = shlex.split(re.sub(r"\{[^}]*\}", "1", command))[1:]  # "1" parses as a name, a date's text and an id
    return [SAMPLES.get(word, word) for word in words]


def _command_names() -> set[str]:
    command_problem(["status"])  # imports every command module, which registers its commands on the app
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


NAMES = _command_names()
COMMANDS = printed_commands()


def test_the_collector_finds_the_fixes_of_why_status_and_doctor() -> None:
    """The collector sees the commands the three print (a collector that finds nothing would pass everything)."""
    texts = {command for _, command in COMMANDS}
    assert "coordinator backfill {node} --from {self.partition} --to {self.partition}" in texts  # why / status
    assert "coordinator why DAG -p PARTITION" in texts  # doctor's intents
    assert "coordinator release INSTANCE" in texts  # doctor's trigger budget
    assert any(c.startswith("coordinator watch --adopt-none") for c in texts)  # status' held first adoption
    assert len(COMMANDS) > 30, COMMANDS


#: The printed commands a user types: every one found but the prose mentions of REFERENCES.
TO_TYPE = [(where, command) for where, command in COMMANDS if command not in REFERENCES]


def test_every_allowed_prose_mention_is_still_printed() -> None:
    """Each entry of REFERENCES (a command named in prose, not to type) is still found in the package, so the list
    of exceptions cannot outlive the text it excuses."""
    assert set(REFERENCES) <= {command for _, command in COMMANDS}, set(REFERENCES) - {c for _, c in COMMANDS}


@pytest.mark.parametrize(("where", "command"), TO_TYPE, ids=[f"{w}:{c}" for w, c in TO_TYPE])
def test_every_printed_command_parses(where: str, command: str) -> None:
    """Each printed command parses with the real CLI (no missing argument or option, no unknown flag) and holds no
    "..." a user would have to guess."""
    assert "..." not in command.split(), f"{where}: `{command}` leaves a value to guess"
    assert command_problem(_args(command)) is None, f"{where}: `{command}`: {command_problem(_args(command))}"


def test_the_backfill_step_of_a_held_adoption_names_its_dates() -> None:
    """A held first adoption's "start from new runs only" step is a backfill command with the held partitions' dates
    that parses, not "--from ... --to ..."."""
    node = NodeId("default", "02_pipeline")
    triggers = tuple(
        Trigger(node, p, {}, TriggerAction.CREATE, run_id_for(p), "history", 1, 0, 1)
        for p in ("2026-01-05T00:00:00Z", "2026-01-02T00:00:00Z")
    )
    held = FirstAdoption(None, HistoryChoice(HistoryMode.AUTO), triggers, limit=1)
    (step,) = [s for s in held.how_to_proceed() if "coordinator backfill" in s]
    command = step[step.index("coordinator backfill") :].split(" for each DAG")[0]
    assert command == "coordinator backfill DAG --from 2026-01-02 --to 2026-01-05", step
    assert command_problem(_args(command)) is None
