"""Starting a partitioned root by key, as docs/howto/existing-airflow.md shows it: ``coordinator trigger`` and the REST
call it makes, against the fake Airflow, with a watcher that then releases the root's dependent for that key."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request
from pathlib import Path

import pytest

from tests.scenario.conftest import Stack, wait_for
from tests.support.cli_inproc import run_cli

pytestmark = pytest.mark.scenario

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto" / "existing-airflow.md"
GRAPH = {
    "version": 1,
    "dags": {
        "regions": {"partitions": {"segments": ["eu", "us"]}},
        "per_region": {"partitions": {"segments": ["eu", "us"]}, "upstreams": ["regions"]},
    },
}


def _block(name: str) -> str:
    """The fenced block after ``<!-- partitioned-root: NAME -->`` on the page."""
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(rf"<!-- partitioned-root: {name} -->\n```\w+\n(.*?)```", text, re.S)
    assert found is not None, name
    return found.group(1).strip()


def _coordinator(stack: Stack, line: str, *more: str) -> str:
    """``line`` (``coordinator ...``) run as a user runs it, with the stack's graph and Airflow."""
    words = shlex.split(line)
    assert words[0] == "coordinator", line
    result = run_cli([*words[1:], *more, "--deps", str(stack.deps), "--airflow-url", stack.fake.url],
                     env=stack.env(), cwd=stack.tmp_path)  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_the_documented_command_starts_the_partitioned_root_once_and_its_dependent_follows(stack: Stack) -> None:
    """``coordinator trigger regions -p eu`` creates regions' run with partition_key eu and no logical date; the
    watcher then triggers per_region for eu; a repeat creates nothing."""
    for dag in GRAPH["dags"]:
        stack.fake.add_dag(dag)
    stack.set_deps(GRAPH)
    stack.start_watcher()
    command = _block("command")
    said = _coordinator(stack, command)
    assert said.strip() == "created run manual__eu of regions for eu (partition_key 'eu')"
    (run,) = stack.fake.runs("regions")
    assert (run.run_id, run.partition_key, run.logical_date) == ("manual__eu", "eu", None)
    wait_for(lambda: stack.succeeded("per_region", "eu"), "per_region success for eu", 30.0)
    again = _coordinator(stack, command)
    assert again.strip() == "run manual__eu of regions exists already: nothing done"
    assert stack.fake.creates("regions") == 1


def test_the_documented_rest_call_is_what_the_command_makes(stack: Stack) -> None:
    """The page's REST call is ``--dry-run``'s output for the same command, and the fake Airflow accepts its body as
    a run with that partition key."""
    stack.fake.add_dag("regions")
    stack.set_deps(GRAPH)
    printed = _coordinator(stack, _block("command"), "--dry-run").strip()
    assert printed == _block("rest")
    path, body = printed.splitlines()
    method, route = path.split(" ", 1)
    token = _post(f"{stack.fake.url}/auth/token", {"username": "admin", "password": "admin"})["access_token"]
    created = _post(f"{stack.fake.url}{route}", json.loads(body), token, method)
    assert (created["dag_run_id"], created["partition_key"]) == ("manual__eu", "eu")
    (run,) = stack.fake.runs("regions")
    assert (run.run_id, run.partition_key, run.logical_date) == ("manual__eu", "eu", None)


def _post(url: str, body: dict[str, object], token: str | None = None, method: str = "POST") -> dict[str, object]:
    """One JSON request as a user's HTTP client sends it."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: dict[str, object] = json.loads(answer.read())
    return found
