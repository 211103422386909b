"""The audit's repair decisions: write only what etcd is missing, never a needless new generation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coordinator.core.audit import audit_record
from coordinator.core.model import RunRecord, RunState

NOW = datetime(2026, 1, 2, tzinfo=UTC)
T0 = datetime(2026, 1, 1, 1, tzinfo=UTC)


def rec(state: str, cn: int = 0, run_id: str = "r1", start: datetime | None = T0, source: str = "airflow-plugin:x"):
    return RunRecord(state=RunState(state), run_id=run_id, clear_number=cn, start_date=start, source=source)


@pytest.mark.parametrize(
    ("existing", "airflow_state", "start", "expected"),
    [
        pytest.param(None, "success", T0, ("success", 0), id="missing-run-is-written"),
        pytest.param(None, "queued", None, None, id="queued-is-never-written"),
        pytest.param(None, "up_for_retry", T0, None, id="unknown-state-ignored"),
        pytest.param(rec("running"), "success", T0, ("success", 0), id="lagging-running-completed"),
        pytest.param(rec("success"), "success", T0, None, id="same-success-not-rewritten"),
        pytest.param(rec("failed"), "failed", T0, None, id="same-failure-not-rewritten"),
        pytest.param(rec("success", 2), "success", T0 + timedelta(minutes=5), ("success", 3), id="missed-attempt"),
        pytest.param(rec("success", 1), "running", T0 + timedelta(minutes=5), ("running", 2), id="missed-clear"),
        pytest.param(rec("success", 0, run_id="old"), "success", T0, ("success", 0), id="recreated-run"),
        pytest.param(rec("success", 0, "ext", source="mark"), "success", T0, None, id="foreign-record-kept"),
        pytest.param(rec("success"), "running", T0 + timedelta(milliseconds=300), None, id="same-attempt-no-backwards"),
    ],
)
def test_audit_record(existing, airflow_state, start, expected) -> None:
    """Each (etcd record, Airflow run) pair yields exactly the repair the audit rules ask for."""
    result = audit_record(
        existing, run_id="r1", state=airflow_state, start_date=start, end_date=None, source="audit:x", now=NOW
    )
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert (str(result.state), result.clear_number) == expected
        assert result.source == "audit:x"
