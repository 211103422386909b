"""``doctor`` shows operators' holds (issue 51): each standing hold is a warning line with what it covers, since when,
by whom, why and until when, and the complete command that releases it; an expired one is listed without a warning;
a released one is history (real etcd; the fake Airflow at the HTTP boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.core.holds import Hold, parse_selector
from coordinator.core.model import KeyLayout, dump_record
from coordinator.diagnosis.hold_checks import holds_check
from coordinator.diagnosis.model import CheckStatus
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from tests.support.fake_airflow import FakeAirflow
from tests.test_doctor import airflow as airflow
from tests.test_doctor import checks_of, cli_env, run_cli, seed

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def a_hold(hold_id: str, **fields: Any) -> Hold:
    values: dict[str, Any] = {
        "id": hold_id, "selector": parse_selector("01_pipeline"), "nodes": ("default/01_pipeline",),
        "from_partition": "2026-02-27T00:00:00Z", "to_partition": "2026-02-28T00:00:00Z", "downstream": True,
        "reason": "bad customer data in 01", "by": "alice", "created_at": NOW - timedelta(hours=2),
    }  # fmt: skip
    return Hold.model_validate({**values, **fields})


def test_a_standing_hold_warns_with_its_lines_and_the_release_command() -> None:
    """A standing hold makes the check warn: its id, what it covers (and below), since, by, reason, until released,
    and the fix is `coordinator release-hold ID --reason ...`."""
    check = holds_check([a_hold("h-1")], NOW)
    assert check.status is CheckStatus.WARN
    assert "1 standing hold(s)" in check.summary and "default/01_pipeline and the DAGs below" in check.summary
    assert check.details == (
        "h-1: 01_pipeline and every DAG below, partitions 2026-02-27T00:00:00Z .. 2026-02-28T00:00:00Z; since "
        "2026-03-01T10:00:00+00:00 by alice until released: bad customer data in 01",
    )
    assert check.fix is not None and "`coordinator release-hold h-1 --reason 'fixed'`" in check.fix


def test_an_expired_hold_is_listed_without_a_warning_and_a_released_one_not_at_all() -> None:
    """Expired, not released: ok, named in the summary and listed (holds nothing); released: left out."""
    expired = a_hold("h-2", until=NOW - timedelta(minutes=5))
    released = a_hold("h-3", released_at=NOW - timedelta(hours=1), released_by="bob")
    check = holds_check([expired, released], NOW)
    assert check.status is CheckStatus.OK
    assert "no standing hold" in check.summary and "1 expired hold(s) not released" in check.summary
    assert (
        len(check.details) == 1
        and check.details[0].startswith("h-2: ")
        and "expired 2026-03-01T11:55:00" in (check.details[0])
    )
    assert check.fix is None


def test_doctor_lists_the_standing_holds_as_a_warning_and_still_passes(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """With a standing hold, an expired one and a released one in etcd, `doctor` exits 0 with a `holds` warning that
    lists the standing and the expired hold, names who and why, and gives the release command of the standing one."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    keys = KeyLayout(etcd_prefix)
    now = datetime.now(UTC)
    holds = [
        a_hold("h-standing", created_at=now - timedelta(minutes=30), until=now + timedelta(hours=4)),
        a_hold("h-expired", created_at=now - timedelta(hours=3), until=now - timedelta(hours=1)),
        a_hold("h-released", created_at=now - timedelta(hours=3), released_at=now, released_by="bob"),
    ]

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for hold in holds:
                await store.put(keys.hold_key(hold.id), dump_record(hold))

    arun(write())
    done = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    assert done.returncode == 0, done.stdout + done.stderr
    check = checks_of(done)["holds"]
    assert check["status"] == "warn", check
    assert [d.split(":")[0] for d in check["details"]] == ["h-standing", "h-expired"]
    assert "by alice until" in check["details"][0] and "bad customer data in 01" in check["details"][0]
    release = "`coordinator release-hold h-standing --reason 'fixed'`"
    fix = f"once the cause is fixed: {release} (each held run then starts once)"
    assert check["fix"] == fix, check
    text = run_cli("doctor", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url)).stdout
    assert "[warn] holds: 1 standing hold(s)" in text, text


def test_doctor_says_no_hold_stands_when_there_is_none(
    arun: Any, etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, airflow: FakeAirflow
) -> None:
    """No hold recorded: the holds check is ok and says nothing is held back."""
    seed(arun, etcd_settings, etcd_prefix, leader=True, runs={})
    done = run_cli("doctor", "--format", "json", env=cli_env(etcd_endpoint, etcd_prefix, airflow.url))
    check = checks_of(done)["holds"]
    assert check["status"] == "ok" and "nothing is held back" in check["summary"], check
