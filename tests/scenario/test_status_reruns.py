"""``status`` says how many times a DAG's run of a partition was triggered in the last hour, when more than once."""

from __future__ import annotations

import json

import pytest

from tests.scenario.conftest import LAST, ROOT_DAG, Stack, new_partition

pytestmark = pytest.mark.scenario


def test_status_counts_the_triggers_of_the_last_hour_from_the_ledger_history(stack: Stack) -> None:
    """Two clears of the root after its cascade: each dependent was triggered three times (one create, two clears),
    and ``status -p`` says so in the text and in ``last_hour`` of the JSON; the root, never triggered, has none."""
    p = new_partition()
    stack.start_watcher()
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    for attempt in (1, 2):
        stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
        stack.wait_success(LAST, p, attempt=attempt)
        stack.settle()
    rows = json.loads(stack.cli("status", "-p", p, "--format", "json").stdout)["rows"]
    by_dag = {row["dag"]: row for row in rows}
    assert by_dag[ROOT_DAG]["last_trigger"] is None
    for dag in ("02_pipeline", LAST):
        trigger = by_dag[dag]["last_trigger"]
        assert (trigger["count"], trigger["last_hour"], trigger["last_hour_complete"]) == (3, 3, True), trigger
    text = stack.cli("status", "-p", p).stdout
    assert text.count("triggered 3 times in the last hour") == 6, text
