"""Jobs the OpenLineage receiver answers "ignored" for are not lost from sight (its rule 8): the receiver remembers
them (bounded), its status answer and a metric show them, and doctor lists them with a did-you-mean."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from openlineage.client.event_v2 import RunState

from coordinator.core.lineage.ignored import IgnoredJobs
from coordinator.lineage.receiver import STATUS
from tests.lineage.receiver_proc import TOKENS, ReceiverProc, client, event, new_run_id
from tests.scenario.conftest import wait_for
from tests.support.cli_inproc import run_cli
from tests.support.openlineage_example import example

#: The docs' worked example (docs/howto/openlineage.md): dbt models of the external instance analytics, waited for
#: by team_b/report.
EXAMPLE = example()
TYPO = "jaffle.main.jaffle.ordrs.build.run"
UNRELATED = "jaffle.main.jaffle.payments.build.run"
AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
DEPS_FILE = "dependencies.json"


def status(receiver: ReceiverProc, token: str) -> dict[str, Any]:
    """The receiver's status answer for ``token`` (what doctor asks)."""
    answer = httpx.get(f"{receiver.url}{STATUS}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def doctor_lineage(workdir: Path, etcd: str, prefix: str, url: str, token_file: Path) -> dict[str, Any]:
    """The "lineage receiver" check of ``coordinator doctor --format json`` (``main()`` in the test process,
    tests/support/cli_inproc.py: what doctor says is the claim, not its process; saves a 0.6 s CPU start)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    done = run_cli(
        ["doctor", "--format", "json", "--etcd", etcd, "--prefix", prefix, "--deps", str(workdir / DEPS_FILE)],
        env={**base, "COORDINATOR_LINEAGE_URL": url, "COORDINATOR_LINEAGE_TOKEN_FILE": str(token_file)},
    )
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    check: dict[str, Any] = checks["lineage receiver"]
    return check


def test_the_memory_keeps_the_last_distinct_jobs_with_counts() -> None:
    """Past its bound the least recently seen job falls out; a job seen again counts up and becomes the newest."""
    memory = IgnoredJobs(limit=2)
    t0 = datetime(2026, 11, 21, tzinfo=UTC)
    assert memory.note("ns", "a", "why", t0) is True
    assert memory.note("ns", "b", "why", t0 + timedelta(seconds=1)) is True
    assert memory.note("ns", "a", "why", t0 + timedelta(seconds=2)) is False
    assert memory.note("ns", "c", "why", t0 + timedelta(seconds=3)) is True
    recent = memory.recent(lambda namespace, job: True)
    assert [(j.job, j.count, j.first_seen, j.last_seen) for j in recent] == [
        ("c", 1, t0 + timedelta(seconds=3), t0 + timedelta(seconds=3)),
        ("a", 2, t0, t0 + timedelta(seconds=2)),
    ]
    assert [j.job for j in memory.recent(lambda namespace, job: job != "c")] == ["a"]


def test_an_unmapped_job_is_ignored_and_shown_by_status_metric_and_doctor(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """A mistyped model's events are answered and ignored, then listed by the status answer (to the tokens of its
    namespace only), counted by the metric and named by doctor with a did-you-mean; a job close to nothing is listed
    without one; once the file maps the job it disappears from all three."""
    deps = tmp_path / "dependencies.json"
    deps.write_text(json.dumps(EXAMPLE, indent=2))
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    token_file = tmp_path / "dbt.token"
    token_file.write_text(TOKENS["dbt"][0] + "\n")
    try:
        dbt = client(receiver.url, TOKENS["dbt"][0])
        run = new_run_id()
        dbt.emit(event(RunState.START, run, job=TYPO, at=AT))
        dbt.emit(event(RunState.COMPLETE, run, job=TYPO, at=AT + timedelta(minutes=2)))
        dbt.emit(event(RunState.COMPLETE, new_run_id(), job=UNRELATED, at=AT))
        client(receiver.url, TOKENS["spark"][0]).emit(
            event(RunState.COMPLETE, new_run_id(), namespace="spark_prod", job="export", at=AT)
        )
        assert receiver.metric("coordinator_lineage_events_total", outcome="ignored") == 4
        assert receiver.metric("coordinator_lineage_ignored_jobs") == 3

        seen = {job["job"]: job for job in status(receiver, TOKENS["dbt"][0])["ignored"]}
        assert set(seen) == {TYPO, UNRELATED}  # not spark_prod's export: the dbt token may not write that namespace
        assert seen[TYPO]["count"] == 2 and seen[TYPO]["namespace"] == "dbt_prod"
        assert seen[TYPO]["why"] == 'no entry of "openlineage" matches it'
        assert datetime.fromisoformat(seen[TYPO]["last_seen"]) >= datetime.fromisoformat(seen[TYPO]["first_seen"])
        assert [job["job"] for job in status(receiver, TOKENS["spark"][0])["ignored"]] == ["export"]
        assert receiver.log().count("lineage.ignored") == 3  # each job logged once, not per event

        check = doctor_lineage(tmp_path, etcd_endpoint, etcd_prefix, receiver.url, token_file)
        assert check["status"] == "warn", check
        assert f"ignored dbt_prod/{TYPO}: 2 event(s), last " in "\n".join(check["details"]), check
        typo_line = next(line for line in check["details"] if TYPO in line)
        assert typo_line.endswith("did you mean dbt_prod/jaffle.main.jaffle.orders.build.run (openlineage[1])?"), (
            typo_line
        )
        unrelated_line = next(line for line in check["details"] if UNRELATED in line)
        assert "did you mean" not in unrelated_line, unrelated_line
        assert 'correct "job" in that "openlineage" entry' in check["fix"], check

        # The user fixes the file the other way round (the entry takes the name dbt-ol sends): the receiver reloads
        # it and stops listing the job, with no new event.
        fixed = json.loads(json.dumps(EXAMPLE))
        fixed["openlineage"][1]["job"] = TYPO
        deps.write_text(json.dumps(fixed, indent=2))
        wait_for(lambda: TYPO not in {j["job"] for j in status(receiver, TOKENS["dbt"][0])["ignored"]},
                 "the mapped job to leave the ignored list")  # fmt: skip
        assert receiver.metric("coordinator_lineage_ignored_jobs") == 2
        after = doctor_lineage(tmp_path, etcd_endpoint, etcd_prefix, receiver.url, token_file)
        assert after["status"] == "ok" and not any(TYPO in line for line in after["details"]), after
    finally:
        receiver.stop()
