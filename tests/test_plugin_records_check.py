"""doctor's 'plugin records' check (coordinator.diagnosis.airflow_checks): an instance whose plugin wrote before and
whose runs the leader's audit now writes is named as a plugin that stopped writing; one the plugin keeps writing is
fine; one the plugin never wrote for is a warning, as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from coordinator.core.model import KeyLayout
from coordinator.core.view import View
from coordinator.diagnosis.airflow_checks import plugin_records_check
from coordinator.diagnosis.model import CheckStatus, DoctorFacts
from coordinator.informer.presence_value import InstanceCheck

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
KEYS = KeyLayout()


def _state(dag: str, day: int, source: str, started: datetime, rev: int) -> tuple[str, bytes, int]:
    """A success of ``dag`` for day ``day`` of March, written by ``source`` (the plugin's or the audit's shape)."""
    value = {
        "state": "success", "run_id": f"scheduled__{day}", "clear_number": 0, "source": source,
        "start_date": started.isoformat().replace("+00:00", "Z"),
        "end_date": (started + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    return (f"{KEYS.runs}default/{dag}/2026-03-{day:02d}T00:00:00Z", json.dumps(value).encode(), rev)


def _check(*items: tuple[str, bytes, int]) -> tuple[CheckStatus, str]:
    view = View(KEYS)
    view.load(max((rev for _, _, rev in items), default=1), items)
    facts = DoctorFacts(settings=(), prefix=KEYS.prefix, instances=(InstanceCheck(instance="default"),))
    check = plugin_records_check(facts, view, NOW)
    return check.status, check.summary


def test_runs_the_audit_wrote_after_the_plugins_last_record_fail_naming_the_instance() -> None:
    """Two runs that started after the plugin's last record, written by the audit: FAIL, naming default and the
    count."""
    status, summary = _check(
        _state("a", 1, "airflow-plugin:default", NOW - timedelta(hours=5), 1),
        _state("a", 2, "audit:default", NOW - timedelta(hours=2), 2),
        _state("b", 2, "audit:default", NOW - timedelta(hours=1), 3),
    )
    assert status is CheckStatus.FAIL
    assert "stopped writing in default" in summary and "default (2 run state(s))" in summary


def test_one_repair_after_the_plugins_last_record_is_a_warning() -> None:
    """One repaired run after the plugin's last record may be a write lost to an etcd blip: WARN, not FAIL."""
    status, summary = _check(
        _state("a", 1, "airflow-plugin:default", NOW - timedelta(hours=5), 1),
        _state("a", 2, "audit:default", NOW - timedelta(hours=2), 2),
    )
    assert status is CheckStatus.WARN and "default (1 run state(s))" in summary


def test_a_plugin_writing_again_after_the_repairs_clears_the_check() -> None:
    """The plugin records a run that started after the audit's repairs: OK."""
    status, _ = _check(
        _state("a", 1, "audit:default", NOW - timedelta(hours=3), 1),
        _state("b", 1, "audit:default", NOW - timedelta(hours=2), 2),
        _state("a", 2, "airflow-plugin:default", NOW - timedelta(hours=1), 3),
    )
    assert status is CheckStatus.OK


def test_an_instance_the_plugin_never_wrote_for_stays_a_warning() -> None:
    """Only the audit ever wrote (no plugin installed there): WARN as a quiet plugin, never FAIL."""
    status, summary = _check(
        _state("a", 1, "audit:default", NOW - timedelta(hours=3), 1),
        _state("b", 1, "audit:default", NOW - timedelta(hours=2), 2),
    )
    assert status is CheckStatus.WARN and "no run state from the Airflow plugin" in summary
