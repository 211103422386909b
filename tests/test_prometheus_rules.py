"""The shipped alert rules (the chart's files/prometheus-rules.yaml) as Prometheus itself reads them: Debian's
``promtool`` checks the file and runs its unit tests (tests/prometheus/rules.test.yaml, and rules-daily.test.yaml for
the alerts over a day), where every alert has a case in which it fires and one in which it stays quiet. promtool is
installed when missing and we are root on Debian (devtools/prometheus.py); elsewhere these tests fail saying how to
install it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.prometheus import RULES, RULES_TESTS, RULES_TESTS_DAILY, binary


@pytest.fixture(scope="module")
def promtool() -> str:
    return binary("promtool")


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def alert_names(rules: Path = RULES) -> list[str]:
    groups = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_accepts_the_shipped_file(promtool: str) -> None:
    """`promtool check rules` parses every expression and template of the shipped rules file without a finding."""
    result = run_promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in result.stdout


def test_promtool_unit_tests_of_every_alert_pass(promtool: str) -> None:
    """`promtool test rules` passes: each alert fires, with its labels and annotations, where its failure shows, and
    stays quiet in the nearest healthy case."""
    result = run_promtool(promtool, "test", "rules", str(RULES_TESTS), str(RULES_TESTS_DAILY))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_shipped_alert_has_a_firing_and_a_quiet_case() -> None:
    """The unit tests name every alert of the rules file at least once expecting it firing and once expecting none."""
    cases: list[dict[str, Any]] = []
    for path in (RULES_TESTS, RULES_TESTS_DAILY):
        tests = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert [(path.parent / f).resolve() for f in tests["rule_files"]] == [RULES]
        cases += [case for group in tests["tests"] for case in group.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = set(alert_names())
    assert alerts - firing == set(), "alerts without a firing case"
    assert alerts - quiet == set(), "alerts without a quiet case"
    assert (firing | quiet) - alerts == set(), "cases for alerts the file does not have"


def test_a_broken_rule_fails_its_unit_test(promtool: str, tmp_path: Path) -> None:
    """A rule whose expression is broken on purpose (etcd unreachable read as etcd up) fails promtool's unit tests:
    the tests can see a wrong rule, not only a missing one."""
    text = RULES.read_text(encoding="utf-8")
    good = 'max by (job) (coordinator_etcd_up{job!="coordinator-lineage"}) == 0'
    assert text.count(good) == 1
    broken = tmp_path / "rules" / RULES.name
    broken.parent.mkdir()
    broken.write_text(text.replace(good, good.replace("== 0", "== 1")), encoding="utf-8")
    tests = tmp_path / "tests" / RULES_TESTS.name
    tests.parent.mkdir()
    shutil.copyfile(RULES_TESTS, tests)
    spec = yaml.safe_load(tests.read_text(encoding="utf-8"))
    spec["rule_files"] = [str(broken)]
    tests.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    result = run_promtool(promtool, "test", "rules", str(tests))
    output = result.stdout + result.stderr  # promtool reports failures on stderr
    assert result.returncode != 0, output
    failed = {line.split(",")[0].split(":", 1)[1].strip() for line in output.splitlines()
              if line.strip().startswith("alertname:")}  # fmt: skip
    assert failed == {"CoordinatorEtcdUnreachable"}, output


def test_the_monitor_page_tables_every_shipped_alert_with_its_severity_and_duration() -> None:
    """docs/howto/monitor.md's table names exactly the shipped alerts, each with the severity and `for:` of the file,
    so the page cannot drift from the rules it describes."""
    page = (RULES.parents[3] / "docs" / "howto" / "monitor.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(Coordinator\w+)` \| (\w+) \| .*\((\w+)\) \|$", page, re.M)
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    shipped = [(r["alert"], r["labels"]["severity"], r["for"]) for g in groups for r in g["rules"] if "alert" in r]
    assert rows == shipped
