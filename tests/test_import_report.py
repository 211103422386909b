"""The import-dags report model, without Airflow: deepest causes, groups and hints, folding, --min-loaded."""

from __future__ import annotations

import pytest

from coordinator.core.importer.facts import Finding, FindingKind, Origin
from coordinator.core.importer.failures import (
    FailedFile,
    airflow2_headline,
    deepest_cause,
    failing_line,
    group_failures,
    hint,
    verdict,
)
from coordinator.core.importer.report import MAX_LINE, Counts, MinLoaded, clip, explain_missing, fold

#: What Airflow recorded for a file whose DAG read the metadata database at import (issue 24's Mozilla estate).
SQLALCHEMY_CHAIN = """Traceback (most recent call last):
  File "/venv/sqlalchemy/engine/base.py", line 1910, in _execute_context
    self.dialect.do_execute(
sqlite3.OperationalError: no such table: slot_pool

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/dags/pools.py", line 4, in <module>
    Pool.get_pool("etl")
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table: slot_pool
[SQL: SELECT slot_pool.id FROM slot_pool]
(Background on this error at: https://sqlalche.me/e/14/e3q8)
"""


def test_the_deepest_cause_is_the_innermost_exception_not_the_last_line() -> None:
    """A chained SQLAlchemy error gives 'no such table', not its '(Background on this error ...)' last line."""
    assert deepest_cause(SQLALCHEMY_CHAIN) == "sqlite3.OperationalError: no such table: slot_pool"


def test_the_failing_line_is_the_last_frame_in_the_dag_file() -> None:
    """file:line of a failed file is where the traceback last stood in that file, none when it is not shown."""
    assert failing_line(SQLALCHEMY_CHAIN, "/dags/pools.py") == 4
    assert failing_line(SQLALCHEMY_CHAIN, "/dags/other.py") is None


def test_a_cause_without_traceback_is_its_first_line() -> None:
    """With Airflow's tracebacks off the recorded error is str(exc): its first line is the cause."""
    assert deepest_cause("(sqlite3.OperationalError) no such table: x\n[SQL: SELECT 1]") == (
        "(sqlite3.OperationalError) no such table: x"
    )


def test_failures_are_grouped_by_cause_with_counts_largest_first() -> None:
    """48 files failing on one module are one group of 48, ahead of a single other failure."""
    failed = [FailedFile(f"f{i:02}.py", "ModuleNotFoundError: No module named 'google.cloud'") for i in range(48)]
    failed.append(FailedFile("x.py", "KeyError: 'boom'"))
    groups = group_failures(failed, "3.3.2")
    assert [(len(g.files), g.cause) for g in groups] == [
        (48, "ModuleNotFoundError: No module named 'google.cloud'"),
        (1, "KeyError: 'boom'"),
    ]
    assert str(groups[0]).startswith(
        "48 files: ModuleNotFoundError: No module named 'google.cloud' (f00.py, f01.py, f02.py and 45 more)"
    )
    assert groups[1].hint is None


HINTS = {
    "schedule_interval": ("TypeError: DAG.__init__() got an unexpected keyword argument 'schedule_interval'", "3.3.2",
                          "these are Airflow 2 DAGs"),
    "days_ago": ("ImportError: cannot import name 'days_ago' from 'airflow.utils.dates'", "3.0.1",
                 "import with an Airflow 2 interpreter"),
    "datasets": ("ModuleNotFoundError: No module named 'airflow.datasets'", "3.3.2", "these are Airflow 2 DAGs"),
    "dummy": ("ModuleNotFoundError: No module named 'airflow.operators.dummy'", "3.3.2", "these are Airflow 2 DAGs"),
    "sdk-under-2": ("ModuleNotFoundError: No module named 'airflow.sdk'", "2.11.2", "these are Airflow 3 DAGs"),
    "provider": ("ModuleNotFoundError: No module named 'airflow.providers.google'", "3.3.2",
                 "pip install apache-airflow-providers-google"),
    "library": ("ModuleNotFoundError: No module named 'google.cloud'", "2.11.2", "--python"),
    "namespace": ("ImportError: cannot import name 'bigquery' from 'google.cloud' (unknown location)", "3.3.2",
                  "google is not installed in this Python"),
    "database": ("sqlite3.OperationalError: no such table: slot_pool", "3.3.2", "metadata database"),
    "variable": ("KeyError: 'Variable env does not exist'", "3.3.2", "metadata database"),
}  # fmt: skip


@pytest.mark.parametrize(("cause", "version", "expected"), HINTS.values(), ids=HINTS.keys())
def test_each_kind_of_failure_gets_its_hint(cause: str, version: str, expected: str) -> None:
    """Airflow 2 idioms under 3 point to an Airflow 2 interpreter, missing modules to the estate's Python or a
    provider, database reads to the configured database."""
    found = hint(cause, version)
    assert found is not None and expected in found


PROVIDER_HINTS = {
    "cncf-kubernetes": ("No module named 'airflow.providers.cncf.kubernetes'",
                        "apache-airflow-providers-cncf-kubernetes"),
    "dbt-cloud": ("No module named 'airflow.providers.dbt.cloud.operators'", "apache-airflow-providers-dbt-cloud"),
    "microsoft-azure": ("No module named 'airflow.providers.microsoft.azure'",
                        "apache-airflow-providers-microsoft-azure"),
    "amazon": ("No module named 'airflow.providers.amazon.aws.hooks.s3'", "apache-airflow-providers-amazon"),
    "common-sql": ("No module named 'airflow.providers.common.sql'", "apache-airflow-providers-common-sql"),
}  # fmt: skip


@pytest.mark.parametrize(("cause", "package"), PROVIDER_HINTS.values(), ids=PROVIDER_HINTS.keys())
def test_a_missing_provider_is_named_by_its_real_package(cause: str, package: str) -> None:
    """The hint names the provider's real PyPI package (two segments for cncf, dbt, microsoft, apache, common,
    atlassian; one for the rest), never one cut from the module path (apache-airflow-providers-cncf, -dbt)."""
    found = hint(f"ModuleNotFoundError: {cause}", "3.3.2")
    assert found is not None and f"(pip install {package})" in found


def test_a_provider_name_that_cannot_be_told_is_not_guessed() -> None:
    """`airflow.providers.cncf` alone names no package: the hint says which module, not a package that does not
    exist."""
    found = hint("ModuleNotFoundError: No module named 'airflow.providers.cncf'", "3.3.2")
    assert found is not None and "pip install" not in found and "airflow.providers.cncf" in found


def test_a_name_missing_from_an_installed_provider_says_the_version_does_not_match() -> None:
    """`cannot import name 'SimpleHttpOperator' from airflow.providers.http...`: the provider is installed but not
    the version the estate was written for; the hint does not say "install the provider"."""
    cause = "ImportError: cannot import name 'SimpleHttpOperator' from 'airflow.providers.http.operators.http'"
    found = hint(cause, "3.3.2")
    assert found is not None and "pip install" not in found
    assert "apache-airflow-providers-http is installed here but has no SimpleHttpOperator" in found


def test_a_module_of_the_estate_itself_points_to_pythonpath_not_to_another_python() -> None:
    """A missing `operators` that lives beside the DAGs folder (the estate's own code) gets the PYTHONPATH hint with
    the folder that holds it; one nothing holds keeps the "not installed" hint."""
    cause = "ModuleNotFoundError: No module named 'operators.slack_alert'"
    local = hint(cause, "2.10.5", {"operators": "/estate"})
    assert local is not None and "put /estate on PYTHONPATH" in local and "not installed" not in local
    elsewhere = hint(cause, "2.10.5", {})
    assert elsewhere is not None and "operators is not installed in this Python" in elsewhere


def test_a_folder_of_airflow2_dags_is_called_so_in_the_headline_under_airflow3() -> None:
    """Under Airflow 3, when a fifth or more of the files use Airflow 2 idioms in their source (whatever they failed
    on), one headline says these look like Airflow 2 DAGs with the idioms seen; fewer, or Airflow 2 itself: none."""
    sources = {f"f{i}.py": "with DAG('x', schedule_interval='@daily', start_date=days_ago(1)):" for i in range(3)}
    sources |= {f"g{i}.py": "with DAG('y', schedule='@daily'):" for i in range(7)}
    line = airflow2_headline(sources, "3.3.2")
    assert line is not None and line.startswith("these look like Airflow 2 DAGs: 3 of 10 files")
    assert "days_ago" in line and "schedule_interval" in line and "--python" in line
    assert airflow2_headline(sources, "2.11.2") is None
    one = {**{k: v for k, v in sources.items() if k.startswith("g")}, "f0.py": sources["f0.py"]} | {
        f"h{i}.py": "" for i in range(10)
    }
    assert airflow2_headline(one, "3.3.2") is None


def test_airflow2_idioms_are_not_flagged_under_airflow2() -> None:
    """schedule_interval under Airflow 2 is not an 'Airflow 2 DAG' problem: no such hint."""
    assert hint("TypeError: unexpected keyword argument 'schedule_interval'", "2.11.2") is None


def test_the_remedy_most_failures_share_is_said_once_first() -> None:
    """Three Airflow 2 idioms and one missing library: one verdict line for the 3 of 4; none below half."""
    failed = [
        FailedFile("a.py", "TypeError: DAG.__init__() got an unexpected keyword argument 'schedule_interval'"),
        FailedFile("b.py", "ModuleNotFoundError: No module named 'airflow.operators.dummy'"),
        FailedFile("c.py", "ImportError: cannot import name 'days_ago' from 'airflow.utils.dates'"),
        FailedFile("d.py", "ModuleNotFoundError: No module named 'acme'"),
    ]
    found = verdict(group_failures(failed, "3.3.2"))
    assert found is not None and found.startswith("3 of 4 failed files: these are Airflow 2 DAGs")
    others = [failed[3], FailedFile("e.py", "KeyError: 'x'"), FailedFile("f.py", "KeyError: 'y'")]
    assert verdict(group_failures(others, "3.3.2")) is None


def _note(i: int, message: str) -> Finding:
    return Finding(FindingKind.NOTE, Origin(f"d{i}.py", 7), f"dag_{i}.wait", message)


def test_621_identical_notes_fold_into_one_line_with_examples() -> None:
    """Notes that differ only in DAG names and dates are one line 'x621 like ...' with a few file:line examples."""
    notes = [
        _note(i, f"failed_states=['failed'] made the sensor give up early; the coordinator does not trigger dag_{i} "
                 f"until up_{i % 7} is successful (2024-01-0{i % 9 + 1}T01:00:00Z)")
        for i in range(621)
    ] + [_note(999, "something else entirely")]  # fmt: skip
    names = {f"dag_{i}" for i in range(621)} | {f"up_{i}" for i in range(7)} | {"dag_999"}
    lines = [str(line) for line in fold(notes, names)]
    assert len(lines) == 2
    assert lines[0].startswith("x621 like d0.py:7: dag_0.wait: failed_states=['failed']")
    assert "also d1.py:7 dag_1.wait, d2.py:7 dag_2.wait, d3.py:7 dag_3.wait, ..." in lines[0]
    assert lines[1] == "d999.py:7: dag_999.wait: something else entirely"


def test_two_alike_findings_stay_on_their_own_lines() -> None:
    """Below FOLD_AT the findings are read one by one."""
    notes = [_note(i, f"dag_{i} is covered") for i in range(2)]
    assert [str(line) for line in fold(notes, {"dag_0", "dag_1"})] == [str(n) for n in notes]


def test_a_dag_whose_file_failed_is_not_called_missing_from_the_folder() -> None:
    """'not in this folder' becomes 'its file failed: <cause>' for a DAG the loader found in a failed file."""
    note = _note(1, "warehouse is not in this folder: it is written as 'warehouse' without a grid")
    (found,) = explain_missing([note], {"warehouse": ("wh.py", "ModuleNotFoundError: No module named 'x'")})
    assert found.message == (
        "warehouse is not loaded: its file wh.py failed: ModuleNotFoundError: No module named 'x': it is written as "
        "'warehouse' without a grid"
    )
    group = _note(2, "external_task_group_id 'g': warehouse is not in this folder, so its tasks are unknown")
    (found,) = explain_missing([group], {"warehouse": ("wh.py", "KeyError: 'x'")})
    assert found.message == (
        "external_task_group_id 'g': warehouse is not loaded: its file wh.py failed: KeyError: 'x', so its tasks are "
        "unknown"
    )


MIN_LOADED = {
    "default-none": ("1", 10, 10, 0, "no DAG loaded, --min-loaded 1"),
    "default-one": ("1", 10, 9, 1, None),
    "count": ("50", 100, 10, 40, "40 DAGs loaded, --min-loaded 50"),
    "percent-short": ("90%", 100, 20, 300, "80 of 100 files imported (80%), --min-loaded 90%"),
    "percent-ok": ("80%", 100, 20, 300, None),
    "zero": ("0", 5, 5, 0, None),
    "default-mostly-failed": (MinLoaded.DEFAULT, 213, 212, 1, "1 of 213 files imported (0%), --min-loaded 1,50%"),
    "default-no-dag": (MinLoaded.DEFAULT, 10, 0, 0, "no DAG loaded, --min-loaded 1,50%"),
    "default-half": (MinLoaded.DEFAULT, 10, 5, 5, None),
    "both": ("2,90%", 10, 0, 1, "1 DAGs loaded, --min-loaded 2,90%"),
    "both-percent-short": ("90%,2", 10, 2, 9, "8 of 10 files imported (80%), --min-loaded 2,90%"),
}


@pytest.mark.parametrize(("text", "files", "failed", "dags", "expected"), MIN_LOADED.values(), ids=MIN_LOADED.keys())
def test_min_loaded_counts_dags_or_a_percentage_of_files(
    text: str, files: int, failed: int, dags: int, expected: str | None
) -> None:
    """--min-loaded N is a DAG count, P% a share of files that imported, N,P% both; the default (1,50%) fails on no
    DAG and on a folder where most files failed (212 of 213: exit 1, not a file with one DAG)."""
    assert MinLoaded.parse(text).shortfall(files, failed, dags) == expected


@pytest.mark.parametrize(
    "text",
    ["-1", "abc", "120%", "5.5", "1,2", "50%,60%", "1,50%,3"],
    ids=["negative", "word", "over-100", "fraction", "two-counts", "two-percentages", "three-parts"],
)
def test_a_bad_min_loaded_says_what_it_takes(text: str) -> None:
    """Anything but a count or a percentage is a ValueError naming both forms."""
    with pytest.raises(ValueError, match="neither a DAG count"):
        MinLoaded.parse(text)


def test_the_summary_says_what_its_edges_count_and_plurals_agree() -> None:
    """Four sensors on one upstream DAG are one edge in the file (a DAG pair) from four upstream entries, and the
    summary says so; a count of one is singular ("1 edge", "1 file")."""
    line = str(Counts(files=1, failed_files=0, dags=2, sensors=4, markers=0, triggers=0, edges=1, cannot_express=0,
                      never_satisfied=0, sensor_bugs=0, notes=1, entries=4))  # fmt: skip
    assert "4 sensors, 0 markers, 0 triggers -> 1 edge (one per DAG pair, from 4 upstream entries)" in line
    assert line.startswith("1 file (0 failed)") and line.endswith("1 note")


def test_cycles_of_any_length_fold_and_long_lines_are_cut_saying_where_the_rest_is() -> None:
    """Rejected edges whose cycles chain 2, 3 or 4 DAGs fold into one line; a line longer than MAX_LINE ends with
    where the whole text is (the JSON report)."""
    chains = ["a -> b -> a", "c -> d -> e -> c", "f -> g -> h -> i -> f"]
    findings = [
        Finding(FindingKind.INEXPRESSIBLE, Origin(f"{c[0]}.py", 3), f"{c[0]}.wait",
                f"edge {c[0]} <- {c[5]} rejected: cycle {c}; keep this operator")
        for c in chains
    ]  # fmt: skip
    (line,) = fold(findings, "abcdefghi")
    assert line.count == 3
    long = clip("x" * 1000)
    assert len(long) == MAX_LINE and long.endswith("(whole in --report)")
