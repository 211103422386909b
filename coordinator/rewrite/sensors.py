"""One DAG file's text with each target sensor's construction replaced by ``WaitForPermitOperator(...)``, by LibCST.

Rules (``docs/import-dags.md``, "Rewriting the DAG files"):
- **The call, in place.** Only the sensor's call expression changes: ``ExternalTaskSensor(...)`` becomes
  ``WaitForPermitOperator(...)`` where it stands, so a variable it is assigned to, ``>>`` chains, lists,
  ``set_downstream`` and the ``with TaskGroup`` / ``with DAG`` around it keep working; every other byte of the file is
  kept (LibCST's concrete syntax tree: comments, quotes, blank lines, the arguments' own layout).
- **Arguments.** The task id, ``timeout`` and every argument of Airflow's ``BaseOperator`` (``retries``, ``pool``,
  ``trigger_rule``, ``dag``, callbacks...) are kept as written. The sensor's own (the DAG, tasks and states it
  polled, ``execution_delta``/``execution_date_fn``: the edge says them now) and its polling (``poke_interval``,
  ``mode``, ``deferrable``: the wait is deferred and never polls) are dropped.
- **Left as it is, with the reason.** A target is not rewritten, and is returned with its reason, when no call at
  its line has its task id as a literal (built by a helper in another place, a computed task id), when its call is
  inside a loop, a comprehension, a lambda or a function other than a ``@dag`` one (one call builds several tasks, or
  a helper whose other callers would change too), or when it has positional arguments, ``*args``/``**kwargs``, or an
  argument the wait cannot honour (``soft_fail``, an unknown one of a custom sensor).
- **Imports.** ``from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator`` is added once; the
  sensor's import is removed when nothing else in the file uses it.
- **Idempotent.** A target whose call already is ``WaitForPermitOperator`` is left as it is and not listed, so
  rewriting a rewritten file changes nothing.
- **Pure**: text in, text out; a file LibCST cannot parse is reported, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.helpers import get_full_name_for_node
from libcst.metadata import MetadataWrapper, PositionProvider

from coordinator.core.importer.rewrite_plan import SensorTarget

WAIT = "WaitForPermitOperator"
WAIT_MODULE = "coordinator.airflow_plugin.permit_wait"

#: Airflow's ``BaseOperator`` arguments (3.x and 2.x) and the wait's own ``timeout``: kept as written.
KEEP = frozenset(
    {
        "task_id", "timeout", "owner", "email", "email_on_retry", "email_on_failure", "retries", "retry_delay",
        "retry_exponential_backoff", "max_retry_delay", "start_date", "end_date", "depends_on_past",
        "ignore_first_depends_on_past", "wait_for_past_depends_before_skipping", "wait_for_downstream", "dag",
        "params", "default_args", "priority_weight", "weight_rule", "queue", "pool", "pool_slots", "sla",
        "execution_timeout", "on_execute_callback", "on_failure_callback", "on_success_callback",
        "on_retry_callback", "on_skipped_callback", "pre_execute", "post_execute", "trigger_rule", "resources",
        "run_as_user", "task_concurrency", "max_active_tis_per_dag", "max_active_tis_per_dagrun", "executor",
        "executor_config", "do_xcom_push", "multiple_outputs", "inlets", "outlets", "task_group", "doc", "doc_md",
        "doc_json", "doc_yaml", "doc_rst", "task_display_name", "logger_name", "allow_nested_operators",
    }
)  # fmt: skip
#: The sensor's own arguments (what it polled: the edge says it now) and its polling (the wait never polls): dropped.
DROP = frozenset(
    {
        "external_dag_id", "external_task_id", "external_task_ids", "external_task_group_id", "allowed_states",
        "failed_states", "skipped_states", "execution_delta", "execution_date_fn", "check_existence",
        "poll_interval", "poke_interval", "mode", "deferrable", "exponential_backoff", "max_wait",
    }
)  # fmt: skip
#: Sensor arguments with a behaviour the wait does not have (**Left as it is, with the reason**).
REFUSED = {
    "soft_fail": "soft_fail: the sensor skipped on its timeout, the wait fails",
    "silent_fail": "silent_fail: the wait has no such behaviour",
    "never_fail": "never_fail: the sensor skipped instead of failing, the wait fails",
}
#: Decorators that make a function the DAG's own body (a sensor there is built once per DAG, as in a ``with`` block).
DAG_DECORATORS = frozenset({"dag"})


@dataclass(frozen=True, slots=True)
class Untranslated:
    target: SensorTarget
    reason: str


@dataclass(frozen=True, slots=True)
class Rewritten:
    """The file's new text, the targets replaced and those left as they are (**Left as it is, with the reason**)."""

    text: str
    replaced: tuple[SensorTarget, ...]
    untranslated: tuple[Untranslated, ...]


def rewrite_source(text: str, targets: Sequence[SensorTarget]) -> Rewritten:
    """``text`` with every target it can replace replaced (every rule of the module)."""
    if not targets:
        return Rewritten(text, (), ())
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        reason = f"LibCST cannot parse the file: {str(exc).splitlines()[0]}"
        return Rewritten(text, (), tuple(Untranslated(t, reason) for t in targets))
    command = _SensorsToWait(targets)
    new = MetadataWrapper(module).visit(command)
    if command.replaced:  # **Imports**: LibCST's own passes, which keep an import something still uses
        context = CodemodContext()
        AddImportsVisitor.add_needed_import(context, WAIT_MODULE, WAIT)
        imported = _imported_names(module)
        for name in sorted(command.unused & imported.keys()):
            RemoveImportsVisitor.remove_unused_import(context, *imported[name])
        new = AddImportsVisitor(context).transform_module(new)
        new = RemoveImportsVisitor(context).transform_module(new)
    found = command.replaced | command.already
    missing = [
        Untranslated(t, f"no call with task_id {_short(t.task_id)!r} at this line (built by a helper elsewhere, or "
                        "its task_id is computed)")
        for t in targets
        if t not in found and t not in command.refused
    ]  # fmt: skip
    untranslated = [Untranslated(t, r) for t, r in command.refused.items()] + missing
    replaced = tuple(t for t in targets if t in command.replaced)
    if not replaced:
        return Rewritten(text, (), tuple(sorted(untranslated, key=lambda u: u.target.line)))
    return Rewritten(new.code, replaced, tuple(sorted(untranslated, key=lambda u: u.target.line)))


def _short(task_id: str) -> str:
    return task_id.rsplit(".", 1)[-1]


def _name(func: cst.BaseExpression) -> str | None:
    if isinstance(func, cst.Name):
        return func.value
    if isinstance(func, cst.Attribute):
        return func.attr.value
    return None


def _literal_task_id(call: cst.Call) -> str | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "task_id":
            value = arg.value
            if isinstance(value, cst.SimpleString | cst.ConcatenatedString):
                evaluated = value.evaluated_value
                return evaluated if isinstance(evaluated, str) else None
    return None


def _is_dag_function(node: cst.FunctionDef) -> bool:
    for decorator in node.decorators:
        expr = decorator.decorator
        if isinstance(expr, cst.Call):
            expr = expr.func
        if _name(expr) in DAG_DECORATORS:
            return True
    return False


class _SensorsToWait(cst.CSTTransformer):
    """Replaces the targets' calls; records what it replaced, what already was the wait and what it refused."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, targets: Sequence[SensorTarget]) -> None:
        super().__init__()
        self.by_line: dict[int, list[SensorTarget]] = {}
        for target in targets:
            self.by_line.setdefault(target.line, []).append(target)
        self.replaced: set[SensorTarget] = set()
        self.already: set[SensorTarget] = set()
        self.refused: dict[SensorTarget, str] = {}
        #: Names the replaced calls used (the sensor's class, ``timedelta`` of a dropped delta): their imports go when
        #: nothing else uses them.
        self.unused: set[str] = set()
        #: Why a call here would build more than one task, innermost last (**Left as it is, with the reason**).
        self.scopes: list[str | None] = []

    # ---- where a call is ----

    def _enter(self, why: str | None) -> None:
        self.scopes.append(why)

    def _leave(self) -> None:
        self.scopes.pop()

    def visit_For(self, node: cst.For) -> None:
        self._enter("it is built in a for loop (one call, a task per iteration)")

    def leave_For(self, original_node: cst.For, updated_node: cst.For) -> cst.For:
        self._leave()
        return updated_node

    def visit_While(self, node: cst.While) -> None:
        self._enter("it is built in a while loop")

    def leave_While(self, original_node: cst.While, updated_node: cst.While) -> cst.While:
        self._leave()
        return updated_node

    def visit_ListComp(self, node: cst.ListComp) -> None:
        self._enter("it is built in a comprehension (a task per item)")

    def leave_ListComp(self, original_node: cst.ListComp, updated_node: cst.ListComp) -> cst.ListComp:
        self._leave()
        return updated_node

    def visit_SetComp(self, node: cst.SetComp) -> None:
        self._enter("it is built in a comprehension (a task per item)")

    def leave_SetComp(self, original_node: cst.SetComp, updated_node: cst.SetComp) -> cst.SetComp:
        self._leave()
        return updated_node

    def visit_DictComp(self, node: cst.DictComp) -> None:
        self._enter("it is built in a comprehension (a task per item)")

    def leave_DictComp(self, original_node: cst.DictComp, updated_node: cst.DictComp) -> cst.DictComp:
        self._leave()
        return updated_node

    def visit_GeneratorExp(self, node: cst.GeneratorExp) -> None:
        self._enter("it is built in a generator expression (a task per item)")

    def leave_GeneratorExp(self, original_node: cst.GeneratorExp, updated_node: cst.GeneratorExp) -> cst.GeneratorExp:
        self._leave()
        return updated_node

    def visit_Lambda(self, node: cst.Lambda) -> None:
        self._enter("it is built in a lambda")

    def leave_Lambda(self, original_node: cst.Lambda, updated_node: cst.Lambda) -> cst.Lambda:
        self._leave()
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        helper = f"it is built in the function {node.name.value}() (a helper: its other callers would change too)"
        self._enter(None if _is_dag_function(node) else helper)

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        self._leave()
        return updated_node

    # ---- the calls ----

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        line = self.get_metadata(PositionProvider, original_node).start.line
        candidates = self.by_line.get(line)
        if not candidates:
            return updated_node
        task_id = _literal_task_id(original_node)
        if task_id is None:
            return updated_node
        target = next((t for t in candidates if t.task_id == task_id or t.task_id.endswith("." + task_id)), None)
        if target is None:
            return updated_node
        if _name(original_node.func) == WAIT:
            self.already.add(target)  # **Idempotent**
            return updated_node
        reason = self._refusal(original_node)
        if reason is not None:
            self.refused[target] = reason
            return updated_node
        self.replaced.add(target)
        dropped = [arg.value for arg in original_node.args if arg.keyword is not None and arg.keyword.value in DROP]
        for node in (original_node.func, *dropped):
            self.unused |= {n.value for n in _names(node)}
        return _wait_call(updated_node)

    def _refusal(self, call: cst.Call) -> str | None:
        scope = next((why for why in reversed(self.scopes) if why is not None), None)
        if scope is not None:
            return scope
        for arg in call.args:
            if arg.star:
                return f"it is called with {arg.star}arguments (its arguments are known only when it runs)"
            if arg.keyword is None:
                return "it has positional arguments"
            name = arg.keyword.value
            if name in REFUSED:
                if isinstance(arg.value, cst.Name) and arg.value.value == "False":
                    continue
                return REFUSED[name]
            if name not in KEEP and name not in DROP:
                return f"the argument {name}= has no meaning for the wait (a custom sensor's?)"
        return None


def _names(node: cst.CSTNode) -> list[cst.Name]:
    """The names a node reads (the root of ``a.b.C`` is ``a``)."""
    found: list[cst.Name] = []

    class Names(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            found.append(name)

        def visit_Attribute(self, attribute: cst.Attribute) -> bool:
            attribute.value.visit(self)
            return False  # the attribute's own name is no variable

    node.visit(Names())
    return found


def _imported_names(module: cst.Module) -> dict[str, tuple[str, str | None, str | None]]:
    """Each name the module's top-level imports bind, with ``(module, object, alias)`` as LibCST's
    ``RemoveImportsVisitor`` takes them (relative imports and ``*`` are left alone)."""
    found: dict[str, tuple[str, str | None, str | None]] = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.ImportFrom) and small.module is not None and not small.relative:
                if isinstance(small.names, cst.ImportStar):
                    continue
                source = get_full_name_for_node(small.module)
                for alias in small.names:
                    if source is not None:
                        local = alias.evaluated_alias or alias.evaluated_name
                        found[local] = (source, alias.evaluated_name, alias.evaluated_alias)
            elif isinstance(small, cst.Import):
                for alias in small.names:
                    local = alias.evaluated_alias or alias.evaluated_name.split(".")[0]
                    found[local] = (alias.evaluated_name, None, alias.evaluated_alias)
    return found


def _wait_call(call: cst.Call) -> cst.Call:
    """The wait's call in place of the sensor's (**The call, in place** and **Arguments**): the kept arguments as
    written; when the original last one was dropped, the new last one ends as it ended (a trailing comma or none, the
    closing parenthesis on its own line or not) and keeps its own comment."""
    kept = [arg for arg in call.args if arg.keyword is not None and arg.keyword.value in KEEP]
    if kept and call.args and kept[-1] is not call.args[-1]:
        kept[-1] = _ending_as(kept[-1], call.args[-1])
    return call.with_changes(func=cst.Name(WAIT), args=kept)


def _ending_as(arg: cst.Arg, last: cst.Arg) -> cst.Arg:
    """``arg`` ending where ``last`` ended: the line break and indent before ``)`` are ``last``'s, the comment after
    ``arg``'s comma stays."""
    comma = arg.comma
    closing = last.comma.whitespace_after if isinstance(last.comma, cst.Comma) else last.whitespace_after_arg
    if (
        isinstance(comma, cst.Comma)
        and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace)
        and isinstance(closing, cst.ParenthesizedWhitespace)
    ):
        own = comma.whitespace_after
        ending = own.with_changes(empty_lines=closing.empty_lines, indent=closing.indent, last_line=closing.last_line)
        return arg.with_changes(
            comma=comma.with_changes(whitespace_after=ending), whitespace_after_arg=cst.SimpleWhitespace("")
        )
    return arg.with_changes(comma=last.comma, whitespace_after_arg=last.whitespace_after_arg)
