"""``coordinator --help`` explains itself: every option of every command, walked through the real typer/click app.

The rules (coordinator.cli.app's docstring): an option that overrides a setting shows its environment variable; every
option shows its default or is required (a flag is off unless given); a short option means one long option
everywhere, and a long option has the same short one everywhere; a value's metavar says what to type, never a Python
type; every command sits in one panel of ``coordinator --help``; and a command lists no option it does not read.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from coordinator.cli.app import PANELS, app, env_var
from coordinator.cli.entry import load_commands
from coordinator.runtime.settings import Settings

#: Options that read no environment variable, by long name (or "command --option" where the same name reads one
#: elsewhere), each group with its reason. Flags are not listed: a flag says what this one run does, off unless given.
_SELECTORS = "--partition --from --to --before --older-than --dag --against --namespace --state --run-id --clear-number"
_NOT_SETTINGS = {
    "says what this one run is about (a DAG, a partition, a range, a name): no deployment sets it":
        f"{_SELECTORS} --reason --writer --lineage --adopt-since",
    "says where or how this one run prints its result":
        "--format --last --output --out --report --secrets-dir --diff-out",
    "a bound or an interpreter of a one-off check or conversion, chosen per run":
        "--timeout --wait --python --min-loaded",
    "selects the instance this run is about (COORDINATOR_INSTANCE names the Airflow a plugin runs in, not this)":
        "doctor:--instance import-dags:--instance mark:--instance roles:--instance",
    "says when or by whom for this one incident action (hold, history), chosen per run": "--since --until --by",
    "no setting holds the log level: the services get it as an argument (the chart's args)": "--log-level",
    "no setting holds it: the chart passes it as an argument (lineage.maxBodyBytes)": "--max-body",
}  # fmt: skip
NOT_SETTINGS = {name.replace(":", " "): why for why, names in _NOT_SETTINGS.items() for name in names.split()}

#: Variables options declare that are not fields of Settings, and whose they are.
_RECEIVER = "the OpenLineage receiver's own (a process of its own; the chart sets them)"
OTHER_VARIABLES = {
    "COORDINATOR_INSTANCE": "the Airflow plugin's instance name (check-plugin checks the plugin as it runs)",
    "COORDINATOR_LINEAGE_LISTEN": _RECEIVER,
    "COORDINATOR_LINEAGE_HTTP": _RECEIVER,
    "COORDINATOR_LINEAGE_TOKENS_FILE": _RECEIVER,
    "COORDINATOR_LINEAGE_INSTANCES": _RECEIVER,
}

#: Options a command accepts but must not list: each is read by nothing (reconcile --once: one pass is the only
#: mode; accepted, hidden, for the scripts written when it was required).
MUST_NOT_LIST = {"reconcile": {"--once"}}

#: Options whose help may lack a default although they are neither required nor flags (none so far; each entry
#: needs a reason).
NO_DEFAULT: dict[str, str] = {}

#: What typer or click print for a value when no metavar is given: "<str>", "<list[str]>", "<path>", "TEXT" ...
PYTHON_TYPE = re.compile(r"<\w+(\[[\w, ]+\])?>|\b(TEXT|INTEGER|FLOAT|PATH|BOOLEAN|FILENAME|DIRECTORY)\b")


def commands() -> Iterator[tuple[str, Any, Any]]:
    """(path, command, context) of every command and subcommand group below ``coordinator``, hidden ones excepted."""
    load_commands()
    root = typer.main.get_command(app)
    root_ctx = root.context_class(root, info_name="coordinator")

    def walk(group: Any, ctx: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            sub = command.context_class(command, info_name=name, parent=ctx)
            yield f"{path} {name}".strip(), command, sub
            if hasattr(command, "list_commands"):
                yield from walk(command, sub, f"{path} {name}")

    yield from walk(root, root_ctx, "")


def options(command: Any, ctx: Any) -> Iterator[Any]:
    """The options a command lists (not --help, not hidden ones)."""
    for param in command.get_params(ctx):
        if param.param_type_name == "option" and not param.hidden and "--help" not in param.opts:
            yield param


def long_name(param: Any) -> str:
    return str(next(opt for opt in param.opts if opt.startswith("--")))


def not_a_setting(path: str, param: Any) -> str | None:
    """Why this option has no environment variable, or None when it must have one."""
    name = long_name(param)
    return NOT_SETTINGS.get(f"{path} {name}", NOT_SETTINGS.get(name))


ALL = list(commands())
OPTIONS = [(path, param, ctx) for path, command, ctx in ALL for param in options(command, ctx)]
IDS = [f"{path} {long_name(param)}" for path, param, _ in OPTIONS]


def test_every_command_module_is_loaded() -> None:
    """load_commands without a command (main()'s help and suggestions, the reference page) imports every command
    module of coordinator.cli."""
    load_commands()
    package = importlib.import_module("coordinator.cli")
    modules = {m.name for m in pkgutil.iter_modules(package.__path__) if m.name.endswith("_cmds")}
    assert modules and all(f"coordinator.cli.{name}" in sys.modules for name in modules), modules


@pytest.mark.parametrize(("path", "param", "ctx"), OPTIONS, ids=IDS)
def test_an_option_shows_its_environment_variable_and_its_default(path: str, param: Any, ctx: Any) -> None:
    """An option's help names its environment variable unless it is listed as no setting, and shows its default
    unless it is required or a flag that is off."""
    names, text = param.get_help_record(ctx)
    reason = not_a_setting(path, param)
    if param.is_flag:
        assert param.envvar is None, f"{path} {names}: a flag reads no variable ({param.envvar})"
        assert not param.default or "default:" in text, f"{path} {names}: a flag that is on shows it"
        return
    if reason is None:
        assert isinstance(param.envvar, str), f"{path} {names}: declares no environment variable (envvar=)"
        assert f"env var: {param.envvar}" in text, f"{path} {names}: help lacks [env var: {param.envvar}]: {text}"
        settings = {env_var(field) for field in Settings.model_fields}
        assert param.envvar in settings | set(OTHER_VARIABLES), f"{param.envvar}: neither a setting's nor known"
    else:
        assert param.envvar is None, f"{path} {names}: reads {param.envvar} but is listed as no setting ({reason})"
    if not param.required and f"{path} {long_name(param)}" not in NO_DEFAULT:
        assert re.search(r"default: \S", text), f"{path} {names}: shows no default: {text}"
    variable = param.envvar or ""
    if any(word in variable for word in ("PASSWORD", "SECRET", "TOKEN")) and not variable.endswith("_FILE"):
        assert "default:" not in text, f"{path} {names}: a secret shows no default"


def test_the_rendered_help_shows_each_variable() -> None:
    """Each command's --help page, as rich renders it, shows [env var: ...] for every variable its options read."""
    runner = CliRunner()
    for path, command, ctx in ALL:
        variables = {p.envvar for p in options(command, ctx) if isinstance(p.envvar, str)}
        page = runner.invoke(app, [*path.split(), "--help"], terminal_width=300, env={"COLUMNS": "300"})
        assert page.exit_code == 0, (path, page.output)
        for variable in variables:
            assert f"[env var: {variable}]" in page.output, (path, variable, page.output)


def test_a_short_option_means_one_long_option_everywhere() -> None:
    """No short letter stands for two long options, and a long option has the same short one wherever it has one."""
    short_to_long: dict[str, set[str]] = {}
    long_to_short: dict[str, set[str]] = {}
    for _path, param, _ctx in OPTIONS:
        shorts = {opt for opt in param.opts if not opt.startswith("--")}
        long_to_short.setdefault(long_name(param), set()).add(",".join(sorted(shorts)))
        for short in shorts:
            short_to_long.setdefault(short, set()).add(long_name(param))
    assert {s: ls for s, ls in short_to_long.items() if len(ls) > 1} == {}
    assert {name: s for name, s in long_to_short.items() if len(s) > 1} == {}


def test_no_metavar_is_a_python_type() -> None:
    """Every argument and option that takes a value shows a metavar saying what to type (FILE, N), not a type."""
    found = []
    for path, command, ctx in ALL:
        for param in command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and PYTHON_TYPE.search(record[0]):
                found.append(f"{path}: {record[0]}")
        if PYTHON_TYPE.search(ctx.get_usage()):
            found.append(ctx.get_usage())
    assert found == []


def test_every_command_is_in_a_panel() -> None:
    """`coordinator --help` lists each command (and subcommand) in one of the panels, none under plain Commands."""
    outside = [path for path, command, _ in ALL if getattr(command, "rich_help_panel", None) not in PANELS]
    assert outside == []
    page = CliRunner().invoke(app, ["--help"], terminal_width=200)
    titles = [panel.split(":")[0] for panel in PANELS]
    assert [t for t in re.findall(r"─ (\w+):", page.output)] == titles, page.output


def test_no_command_lists_an_option_it_does_not_read() -> None:
    """The options of MUST_NOT_LIST are accepted but not listed (reconcile --once is hidden)."""
    listed = {path: {long_name(p) for p in options(command, ctx)} for path, command, ctx in ALL}
    for path, names in MUST_NOT_LIST.items():
        assert listed[path] & names == set(), path
        command = next(c for p, c, _ in ALL if p == path)
        assert all(any(name in p.opts for p in command.params) for name in names), f"{path} no longer accepts {names}"


def test_no_help_text_cites_a_numbered_rule() -> None:
    """Help texts name the concept, not "semantics rule 16"-style references to a document the reader lacks."""
    found = []
    for path, command, ctx in ALL:
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.get_params(ctx))]
        found += [f"{path}: {t}" for t in texts if re.search(r"\brules? \d", t)]
    assert found == []


def test_the_reference_page_shows_each_variable_and_default() -> None:
    """The CLI reference page (docs/_ext/coordinator_reference.py) shows each option's variable and default as
    --help does, and each command's group."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
    try:
        reference = importlib.import_module("coordinator_reference")
    finally:
        sys.path.pop(0)
    page = reference.cli_markdown()
    for path, param, ctx in OPTIONS:
        names, text = param.get_help_record(ctx)  # the help with "[env var: ...; default: ...]", as the tests above
        assert f"| {reference._cell(text)} |" in page, (path, names)
    for path, _command, _ctx in ALL:
        assert re.search(rf"\| \[`coordinator {path}`\]\(#[^)]*\) \| (Setup|Run|Inspect|Operate) \|", page), path
