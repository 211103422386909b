"""``import-dags --rewrite``'s pure parts: one file's text rewritten by LibCST (``coordinator/rewrite/sensors.py``), the
diff (``rewrite/patch.py``), the plan's graph marks and the merge that keeps them (no Airflow: fast)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from coordinator.core.importer.facts import Finding, FindingKind, LinkFact, LinkKind, Origin
from coordinator.core.importer.merge import merge
from coordinator.core.importer.rewrite_plan import (
    KEEP_SCHEDULE_NOTE,
    SensorTarget,
    mark_scheduled,
    plan_rewrite,
    scheduled_notes,
)
from coordinator.core.importer.translate import ImportResult
from coordinator.rewrite.patch import unified_diff
from coordinator.rewrite.sensors import rewrite_source

SOURCE = textwrap.dedent(
    '''\
    """A dependent written as estates write them."""

    from datetime import timedelta

    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
    from airflow.sdk import DAG, TaskGroup

    with DAG('report', schedule="0 5 * * *", catchup=False) as dag:  # the schedule stays
        # Waits for the orders' load, four hours earlier.
        wait = ExternalTaskSensor(
            task_id='wait_orders',
            external_dag_id="ingest",
            external_task_id="load",
            execution_delta=timedelta(hours=4),
            timeout=3600,  # an hour, then it fails
            retries=2,
            poke_interval=60,
            mode="reschedule",
        )
        build = EmptyOperator(task_id="build")
        wait >> build
        [ExternalTaskSensor(task_id="wait_fx", external_dag_id="fx"), build] >> EmptyOperator(task_id="publish")
        with TaskGroup("checks"):
            ExternalTaskSensor(task_id="wait_ref", external_dag_id="ref", deferrable=True).set_downstream(build)
    '''
)
TARGETS = (
    SensorTarget("report", "wait_orders", 11),
    SensorTarget("report", "wait_fx", 23),
    SensorTarget("report", "checks.wait_ref", 25),
)


def test_the_sensors_become_the_wait_and_every_other_byte_stays() -> None:
    """Only the three calls change: task ids, timeout, retries, the variable, ``>>``, the list, ``set_downstream``,
    the task group and the comments are as written; the sensor's own arguments and its polling are gone."""
    done = rewrite_source(SOURCE, TARGETS)
    assert done.replaced == TARGETS and done.untranslated == ()
    expected = SOURCE.replace(
        "from airflow.sdk import DAG, TaskGroup\n",
        "from airflow.sdk import DAG, TaskGroup\n"
        "from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator\n",
    )
    expected = expected.replace("from datetime import timedelta\n\n", "")
    expected = expected.replace("from airflow.providers.standard.sensors.external_task import ExternalTaskSensor\n", "")
    expected = expected.replace(
        """\
    wait = ExternalTaskSensor(
        task_id='wait_orders',
        external_dag_id="ingest",
        external_task_id="load",
        execution_delta=timedelta(hours=4),
        timeout=3600,  # an hour, then it fails
        retries=2,
        poke_interval=60,
        mode="reschedule",
    )""",
        """\
    wait = WaitForPermitOperator(
        task_id='wait_orders',
        timeout=3600,  # an hour, then it fails
        retries=2,
    )""",
    )
    expected = expected.replace(
        'ExternalTaskSensor(task_id="wait_fx", external_dag_id="fx")', 'WaitForPermitOperator(task_id="wait_fx")'
    )
    expected = expected.replace(
        'ExternalTaskSensor(task_id="wait_ref", external_dag_id="ref", deferrable=True)',
        'WaitForPermitOperator(task_id="wait_ref")',
    )
    assert done.text == expected


def test_the_last_kept_argument_keeps_its_comment_and_the_call_its_closing_line() -> None:
    """When the sensor's last arguments are dropped, the new last one keeps its comment and the closing parenthesis
    its line and indent, with a trailing comma as written or without one."""
    for comma in (",", ""):
        source = (
            "with DAG('d'):\n"
            "    wait = ExternalTaskSensor(\n"
            "        task_id='w',\n"
            "        timeout=600,  # ten minutes\n"
            f"        mode='reschedule'{comma}\n"
            "    )\n"
        )
        done = rewrite_source(source, [SensorTarget("d", "w", 2)])
        assert done.text == (
            "from coordinator.airflow_plugin.permit_wait import WaitForPermitOperator\n\n"
            "with DAG('d'):\n"
            "    wait = WaitForPermitOperator(\n"
            "        task_id='w',\n"
            "        timeout=600,  # ten minutes\n"
            "    )\n"
        ), comma


def test_rewriting_a_rewritten_file_changes_nothing() -> None:
    """Idempotent: the targets found again in the rewritten text (their calls now the wait) leave it byte for byte,
    and nothing is listed as untranslated."""
    once = rewrite_source(SOURCE, TARGETS).text
    lines = once.splitlines()
    # Each call's first line: the task id's own line, or the line above when the call opens there.
    starts = [i - ("WaitForPermitOperator(" not in line) for i, line in enumerate(lines, 1) if "task_id=" in line]
    again = tuple(
        SensorTarget(t.dag_id, t.task_id, line) for t, line in zip(TARGETS, starts[:1] + starts[2:], strict=True)
    )
    twice = rewrite_source(once, again)
    assert (twice.text, twice.replaced, twice.untranslated) == (once, (), ())


UNTRANSLATABLE = textwrap.dedent(
    """\
    from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
    from airflow.sdk import DAG, dag

    ARGS = {"external_dag_id": "up"}

    def wait_for(upstream):
        return ExternalTaskSensor(task_id=f"wait_{upstream}", external_dag_id=upstream)

    def helper():
        return ExternalTaskSensor(task_id="wait_helper", external_dag_id="up")

    with DAG("d", schedule="@daily"):
        for source in ("a", "b"):
            ExternalTaskSensor(task_id="wait_" + source, external_dag_id=source)
        for source in ("c",):
            ExternalTaskSensor(task_id="wait_looped", external_dag_id=source)
        ExternalTaskSensor(task_id="wait_kwargs", **ARGS)
        ExternalTaskSensor("wait_positional", external_dag_id="up")
        ExternalTaskSensor(task_id="wait_soft", external_dag_id="up", soft_fail=True)
        ExternalTaskSensor(task_id="wait_custom", external_dag_id="up", lookback=3)
        wait_for("e")
        ExternalTaskSensor(task_id="wait_plain", external_dag_id="up", soft_fail=False)

    @dag(schedule="@daily")
    def decorated():
        ExternalTaskSensor(task_id="wait_decorated", external_dag_id="up")
    """
)


def test_what_cannot_be_translated_stays_and_is_listed_with_its_line_and_reason() -> None:
    """A helper, a loop, ``**kwargs``, positional arguments, ``soft_fail=True``, an unknown argument and a computed
    task id stay as written, each with its line and reason; the plain sensor (``soft_fail=False``) and the one in a
    ``@dag`` function are replaced."""
    targets = [
        SensorTarget("d", "wait_helper", 10),
        SensorTarget("d", "wait_a", 14),
        SensorTarget("d", "wait_looped", 16),
        SensorTarget("d", "wait_kwargs", 17),
        SensorTarget("d", "wait_positional", 18),
        SensorTarget("d", "wait_soft", 19),
        SensorTarget("d", "wait_custom", 20),
        SensorTarget("d", "wait_e", 21),
        SensorTarget("d", "wait_plain", 22),
        SensorTarget("decorated", "wait_decorated", 26),
    ]
    done = rewrite_source(UNTRANSLATABLE, targets)
    assert [t.task_id for t in done.replaced] == ["wait_plain", "wait_decorated"]
    reasons = {u.target.line: u.reason for u in done.untranslated}
    assert sorted(reasons) == [10, 14, 16, 17, 18, 19, 20, 21]
    assert "function helper()" in reasons[10]
    assert "computed" in reasons[14] and "computed" in reasons[21] and "computed" in reasons[18]
    assert "for loop" in reasons[16]
    assert "**arguments" in reasons[17]
    assert "soft_fail" in reasons[19]
    assert "lookback=" in reasons[20]
    lines = done.text.splitlines()
    assert '    WaitForPermitOperator(task_id="wait_plain")' in lines  # soft_fail=False: the wait's own way
    assert '    WaitForPermitOperator(task_id="wait_decorated")' in lines
    assert done.text.count("ExternalTaskSensor(") == UNTRANSLATABLE.count("ExternalTaskSensor(") - 2


def test_a_file_libcst_cannot_parse_is_reported_not_raised() -> None:
    """Every target of an unparsable file is listed with the parser's reason; the text is returned unchanged."""
    done = rewrite_source("with DAG(:\n", [SensorTarget("d", "w", 1)])
    assert done.text == "with DAG(:\n" and done.replaced == ()
    assert "cannot parse" in done.untranslated[0].reason


def test_the_diff_applies_with_git_apply(tmp_path: Path) -> None:
    """The diff names a/PATH and b/PATH relative to where it was made, so ``git apply`` applies it there, and only
    changed files are in it."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "report.py").write_text(SOURCE, encoding="utf-8")
    (dags / "other.py").write_text("x = 1\n", encoding="utf-8")
    new = rewrite_source(SOURCE, TARGETS).text
    diff = unified_diff([("dags/report.py", SOURCE, new), ("dags/other.py", "x = 1\n", "x = 1\n")])
    assert "dags/other.py" not in diff and diff.startswith("diff --git a/dags/report.py b/dags/report.py\n")
    (tmp_path / "rewrite.diff").write_text(diff, encoding="utf-8")
    subprocess.run(["git", "apply", "rewrite.diff"], cwd=tmp_path, check=True, capture_output=True)
    assert (dags / "report.py").read_text(encoding="utf-8") == new


def _link(dag: str, task: str, line: int | None, kind: LinkKind = LinkKind.SENSOR) -> LinkFact:
    return LinkFact(kind, dag, task, Origin("f.py", line), "up")


def test_the_plan_targets_only_sensors_whose_edge_was_written() -> None:
    """A sensor with its edge written is a target (a bug whose edge reproduces it too); one whose edge is not in the
    file is kept with the report's reason; a marker is no target."""
    findings = (
        Finding(FindingKind.INEXPRESSIBLE, Origin("f.py", 5), "c.w", "allowed_states ['skipped']: keep this sensor"),
        Finding(FindingKind.BUG, Origin("f.py", 3), "b.w", "satisfied by an old run: ...; the edge reproduces it"),
        Finding(FindingKind.BUG, Origin("f.py", 9), "n.w", "never satisfied: ...; no edge written"),
    )
    result = ImportResult({"dags": {}}, findings, 3, 1, written=frozenset({"a.w", "b.w"}))
    links = [_link("a", "w", 1), _link("b", "w", 3), _link("c", "w", 5), _link("up", "m", 7, LinkKind.MARKER),
             _link("n", "w", 9)]  # fmt: skip
    plan = plan_rewrite(result, links)
    assert plan.targets == {"f.py": (SensorTarget("a", "w", 1), SensorTarget("b", "w", 3))}
    assert [(str(k.origin), k.subject, k.reported) for k in plan.kept] == [("f.py:5", "c.w", True),
                                                                           ("f.py:9", "n.w", True)]  # fmt: skip
    assert "allowed_states" in plan.kept[0].reason and "never satisfied" in plan.kept[1].reason


def test_a_rewritten_dag_is_marked_scheduled_and_keeps_it_when_imported_again() -> None:
    """The marked entry says ``"runs": "scheduled"`` without ``data_interval``, its ``schedule:`` note says to keep
    the schedule; merging an import of the rewritten folder (no sensor, so no upstreams) keeps its edges."""
    document = {
        "version": 1,
        "dags": {
            "up": {"partitions": {"cron": "@daily"}},
            "d": {"partitions": {"cron": "@daily"}, "upstreams": ["up"], "data_interval": "period"},
        },
    }
    marked = mark_scheduled(document, ["d"])
    assert marked["dags"]["d"] == {"partitions": {"cron": "@daily"}, "upstreams": ["up"], "runs": "scheduled"}
    assert document["dags"]["d"]["data_interval"] == "period"  # the input is not changed
    note = Finding(FindingKind.NOTE, Origin("f.py", 1), "d", "schedule: set schedule=None: ...")
    assert scheduled_notes([note], {"d"})[0].message == KEEP_SCHEDULE_NOTE
    again = {"version": 1, "dags": {"up": {"partitions": {"cron": "@daily"}}, "d": {"partitions": {"cron": "@daily"}}}}
    assert merge(marked, again)["dags"]["d"] == marked["dags"]["d"]


def test_the_rewrite_options_that_do_not_go_together_are_refused_with_the_fix(tmp_path: Path) -> None:
    """Exit 2 before anything loads: the diff and the dependencies file both on stdout, ``--diff-out`` or
    ``--in-place`` without ``--rewrite``; each message names the option to add."""
    from tests.support.cli_inproc import run_cli

    both = run_cli(["import-dags", str(tmp_path), "--rewrite"])
    assert both.returncode == 2 and "--output dependencies.json" in both.stderr and "--diff-out" in both.stderr
    for flag in (["--in-place"], ["--diff-out", "x.diff"]):
        alone = run_cli(["import-dags", str(tmp_path), "-o", str(tmp_path / "d.json"), *flag])
        assert alone.returncode == 2 and "add --rewrite" in alone.stderr, alone.stderr
