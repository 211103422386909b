"""Sphinx extension: the reference pages written from the code at build time, so they cannot drift from it.

A page holds each generated section between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``, the
text :data:`GENERATORS` writes for NAME committed between them, so a reader of the checkout (or of the examples
archive in ``dist/``, ``devtools/dist.py``) finds it without building the site; ``python -m devtools.reference_pages``
rewrites them, and tests/test_reference_pages.py fails when one is stale. When Sphinx reads a page, each section is
written again from the code, so the site never serves a stale reference either. The sections:

- ``cli``: every command of the ``coordinator`` app (walked through click, as ``coordinator --help`` sees it), with
  its help, usage, arguments and options with their environment variables and defaults;
- ``settings``: every field of :class:`coordinator.runtime.settings.Settings`, its ``COORDINATOR_*`` variable, type, default
  and the comment above it in coordinator/runtime/settings.py (the module's own explanation of each default); then every
  other variable a command's option reads, with that option's help and default;
- ``schema``: every definition of the JSON Schema of ``dependencies.json`` (``coordinator schema``'s output) with
  its properties, types and descriptions;
- ``metrics``: every series of the watcher's registry (:class:`coordinator.runtime.metrics.Metrics`), its type, labels and
  help.

The build writes nothing to disk, and the generated pages are re-read on every build (``env-get-outdated``), so an
incremental build never serves a stale reference.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: The width a usage line wraps at, whatever the terminal that writes the page: the text must not depend on it.
WIDTH = 120
#: A generated section: its start marker, the text last committed (possibly none), its end marker.
SECTION_RE = re.compile(r"^<!-- generated: ([a-z]+) -->\n(?:.*?\n)??<!-- end generated: \1 -->$", re.MULTILINE | re.DOTALL)
#: A start marker alone (a section never filled yet).
MARKER_RE = re.compile(r"^<!-- generated: ([a-z]+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code that survives backticks inside it."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# --- CLI -------------------------------------------------------------------------------------------------------------


def cli_group() -> Any:
    """The ``coordinator`` app as a click group, with every command module registered as ``coordinator.cli.entry.main``
    registers them for its help. Typer vendors its own click, so commands are told apart by what they have (a group
    lists commands), not by click's classes."""
    import typer.main

    from coordinator.cli.app import app
    from coordinator.cli.entry import load_commands

    load_commands()
    return typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def walk_commands(group: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """Every visible command below ``group``, depth first in name order, each with its context (for its usage)."""
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = command.context_class(command, info_name=name, parent=ctx)
        yield command, sub
        if _is_group(command):
            yield from walk_commands(command, sub)


def _param_row(param: Any, ctx: Any) -> str:
    """One argument or option as ``--help`` shows it: names and type, then its help with default and required."""
    record = param.get_help_record(ctx)
    names, help_text = record if record else (param.name, "")
    return f"| {_code(_cell(names))} | {_cell(help_text)} |"


def cli_markdown() -> str:
    root = cli_group()
    root_ctx = root.context_class(root, info_name="coordinator", terminal_width=WIDTH, max_content_width=WIDTH)
    lines: list[str] = []
    commands = list(walk_commands(root, root_ctx))
    lines.append("| command | group | what it does |")
    lines.append("| --- | --- | --- |")
    for command, ctx in commands:
        path = ctx.command_path
        # The panel of `coordinator --help` ("Setup: ..."), by its first word.
        group = str(getattr(command, "rich_help_panel", None) or "").split(":")[0]
        lines.append(f"| [{_code(path)}](#{_slug(path)}) | {group} | {_cell(command.get_short_help_str(limit=200))} |")
    lines.append("")
    for command, ctx in commands:
        path = ctx.command_path
        lines.append(f"## {path}")
        lines.append("")
        lines.append(_help_text(command.help or command.short_help or ""))
        lines.append("")
        lines.append("```text")
        lines.append(ctx.get_usage())
        lines.append("```")
        lines.append("")
        params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
        if _is_group(command):
            subs = ", ".join(f"[{_code(f'{path} {name}')}](#{_slug(f'{path} {name}')})" for name in
                             sorted(command.list_commands(ctx)))  # fmt: skip
            lines.append(f"Subcommands: {subs}.")
            lines.append("")
        if params:
            lines.append("| argument or option | help (default) |")
            lines.append("| --- | --- |")
            lines.extend(_param_row(param, ctx) for param in params)
            lines.append("")
    return "\n".join(lines)


def _help_text(text: str) -> str:
    """A docstring as Markdown: click's ``\\b`` (keep this paragraph's line breaks) becomes a literal block."""
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip())]
    out: list[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith("\b"):
            out.append("```text\n" + paragraph.lstrip("\b").strip("\n") + "\n```")
        else:
            out.append(" ".join(paragraph.split()))
    return "\n\n".join(out)


def _slug(heading: str) -> str:
    """The anchor MyST gives a heading (GitHub's rule), so the command table's links resolve."""
    from myst_parser.slugs import github_slugify

    return github_slugify(heading)


# --- settings --------------------------------------------------------------------------------------------------------


def settings_markdown() -> str:
    import inspect

    from coordinator.runtime import settings
    from coordinator.runtime.settings import Settings

    source = inspect.getsource(settings)
    lines = source.splitlines()
    (cls,) = [n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    prefix = str(Settings.model_config.get("env_prefix", ""))
    options = _options_by_variable()
    out = ["| variable | type | default | what it is |", "| --- | --- | --- | --- |"]
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        field = Settings.model_fields[name]
        comment: list[str] = []
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            comment.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        variable = f"{prefix}{name.upper()}"
        default = "none" if field.default is None else _code(str(field.default))
        text = " ".join(comment) or options.get(variable, "")
        out.append(f"| `{variable}` | {_cell(_code(ast.unparse(node.annotation)))} | {default} | {_cell(text)} |")
        options.pop(variable, None)
    own = {f"{prefix}{name.upper()}" for name in Settings.model_fields}
    others = {variable: text for variable, text in options.items() if variable not in own}
    if others:
        out += ["", "Read by one command's option (the option's help, with its default):", "",
                "| variable | what it is |", "| --- | --- |"]  # fmt: skip
        out += [f"| `{variable}` | {_cell(text)} |" for variable, text in sorted(others.items())]
    return "\n".join(out)


def _options_by_variable() -> dict[str, str]:
    """``COORDINATOR_X`` -> the help of the first command-line option that reads that variable (its ``envvar``)."""
    found: dict[str, str] = {}
    root = cli_group()
    for command, ctx in walk_commands(root, root.context_class(root, info_name="coordinator", terminal_width=WIDTH, max_content_width=WIDTH)):
        for param in command.get_params(ctx):
            variable = getattr(param, "envvar", None)
            if isinstance(variable, str) and param.help:
                option = ", ".join(getattr(param, "opts", []))
                shown = param.show_default if isinstance(param.show_default, str) else param.default
                default = "" if shown in (None, "", False) or callable(shown) else f"; default {_code(str(shown))}"
                found.setdefault(variable, f"{param.help} (command-line option {_code(option)}{default})")
    return found


# --- metrics ---------------------------------------------------------------------------------------------------------


def metrics_markdown() -> str:
    from coordinator.runtime.metrics import Metrics, WatcherState

    metrics = Metrics()
    # The state gauges exist only while a watcher's state is bound (read at scrape time): a zero state shows them.
    metrics.bind_state(lambda: WatcherState(False, 0, 0, 0, 0, 0, 0, 0, "", 0, False))
    registry: Any = metrics.registry
    # Label names are not part of a scrape when no series was observed yet: the collectors hold them.
    collectors: dict[str, Any] = getattr(registry, "_names_to_collectors", {})
    out = ["| series | type | labels | help |", "| --- | --- | --- | --- |"]
    for family in sorted(registry.collect(), key=lambda f: f.name):
        if not family.name.startswith("coordinator_"):
            continue  # the process and Python collectors: the client library's standard series
        labels = getattr(collectors.get(family.name), "_labelnames", ())
        name = family.name + ("_total" if family.type == "counter" else "")
        label_cells = ", ".join(f"`{label}`" for label in labels)
        out.append(f"| `{name}` | {family.type} | {label_cells} | {_cell(family.documentation)} |")
    return "\n".join(out)


# --- dependencies.json schema -----------------------------------------------------------------------------------------


def _schema_type(node: dict[str, Any]) -> str:
    """A schema node's type in a few words, with a link to the definition it refers to."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_slug(name)})"
    if "const" in node:
        return _code(json.dumps(node["const"]))
    if "enum" in node:
        return " or ".join(_code(json.dumps(value)) for value in node["enum"])
    if "oneOf" in node and "type" not in node:  # with a type, oneOf only picks which properties are required
        return " or ".join(_schema_type(alternative) for alternative in node["oneOf"])
    kind = node.get("type", "any")
    if kind == "array" and isinstance(node.get("items"), dict):
        return f"array of {_schema_type(node['items'])}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"object of {_schema_type(node['additionalProperties'])}"
    return str(kind)


def _schema_rows(node: dict[str, Any], path: str) -> Iterator[str]:
    """One table row per property, nested objects as dotted paths (``[]`` for an array's items)."""
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        where = f"{path}{name}"
        flag = " (required)" if name in required else ""
        yield f"| {_code(where)}{flag} | {_cell(_schema_type(prop))} | {_cell(prop.get('description', ''))} |"
        for nested, suffix in ((prop, "."), (prop.get("items"), "[].")):
            if isinstance(nested, dict) and "properties" in nested:
                yield from _schema_rows(nested, f"{where}{suffix}")
        for alternative in prop.get("oneOf", ()):
            if isinstance(alternative, dict) and "properties" in alternative:
                yield from _schema_rows(alternative, f"{where}.")


def schema_markdown() -> str:
    from coordinator.core.spec.schema import json_schema

    schema = json_schema()
    lines = [f"The file is one of: {_schema_type(schema)}.", ""]
    for name, node in schema.get("$defs", {}).items():
        lines += [f"## {name}", "", _cell(node.get("description", "")), "", f"Type: {_schema_type(node)}.", ""]
        rows = list(_schema_rows(node, ""))
        for alternative in node.get("oneOf", ()):
            if isinstance(alternative, dict) and "properties" in alternative:
                rows += list(_schema_rows(alternative, ""))
        if rows:
            lines += ["| property | type | description |", "| --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


# --- README links ----------------------------------------------------------------------------------------------------

LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def readme_link_problems(readme: Path, env: Any) -> list[tuple[int, str]]:
    """(line, problem) for every relative link of the README that does not resolve: a file that is not in the
    repository, a page of the site that is not built, or an anchor that no heading of the target page has. The README
    is not a page of the site (GitHub shows it), so MyST does not check it; its links are checked here the same way."""
    from myst_parser.slugs import github_slugify

    text = readme.read_text(encoding="utf-8")
    # Fenced blocks hold code, not links: blank them out, keeping the line numbers.
    text = FENCE_RE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    own = {github_slugify(re.sub(r"[`*]", "", line.lstrip("#").strip()))
           for line in text.splitlines() if re.match(r"^#{1,6} ", line)}  # fmt: skip
    problems: list[tuple[int, str]] = []
    for match in LINK_RE.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ...: not ours to check offline
        line = text.count("\n", 0, match.start()) + 1
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in own:
                problems.append((line, f"#{anchor}: no heading of the README has this anchor"))
            continue
        file = (readme.parent / path).resolve()
        if not file.exists():
            problems.append((line, f"{target}: {path} does not exist"))
            continue
        docs = readme.parent / "docs"
        if file.suffix == ".md" and file.is_relative_to(docs.resolve()):
            docname = file.relative_to(docs.resolve()).with_suffix("").as_posix()
            if docname not in env.found_docs:
                problems.append((line, f"{target}: {path} is not a page of the site"))
            elif anchor and anchor not in env.metadata.get(docname, {}).get("myst_slugs", {}):
                problems.append((line, f"{target}: {path} has no heading with the anchor #{anchor}"))
    return problems


def _check_readme(app: Any, env: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    readme = Path(app.srcdir).parent / "README.md"
    for line, problem in readme_link_problems(readme, env):
        logger.warning("README link %s", problem, location=f"{readme}:{line}", type="coordinator", subtype="readme")


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_markdown,
    "settings": settings_markdown,
    "metrics": metrics_markdown,
    "schema": schema_markdown,
}


def section(name: str) -> str:
    """The section NAME as a page holds it: its markers around the text generated now."""
    return f"<!-- generated: {name} -->\n{GENERATORS[name]()}\n<!-- end generated: {name} -->"


def render(text: str, where: str = "page") -> tuple[str, list[str]]:
    """``text`` with every generated section written again from the code (a start marker alone becomes a whole
    section), and the sections' names; ValueError for a name no generator has."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{where}: unknown generated section {name!r}; known: {', '.join(GENERATORS)}")
        names.append(name)
        return section(name)

    filled = SECTION_RE.sub(replace, text)
    # A start marker with no end marker after it: a section never filled yet.
    rest = [m for m in MARKER_RE.finditer(filled) if m.group(1) not in names]
    if rest:
        filled = MARKER_RE.sub(lambda m: replace(m) if m.group(1) not in names else m.group(0), filled)
    return filled, names


def _fill(app: Any, docname: str, source: list[str]) -> None:
    source[0], names = render(source[0], docname)
    if names:
        app.env.coordinator_generated = {*getattr(app.env, "coordinator_generated", set()), docname}


def _always_outdated(app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    return sorted(getattr(env, "coordinator_generated", set()) - removed)


def setup(app: Any) -> dict[str, Any]:
    from pygments.lexers.special import TextLexer  # type: ignore[import-untyped]

    # Mermaid diagrams render on GitHub; here they stay readable text rather than failing the -W build.
    app.add_lexer("mermaid", TextLexer)
    app.connect("source-read", _fill)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-check-consistency", _check_readme)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
