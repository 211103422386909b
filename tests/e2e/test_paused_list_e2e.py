"""The paused-DAG list the actuator's courtesy check relies on, against a real Airflow 3.3 (``GET /api/v2/dags``)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ALL_DAGS, E2E, assert_paused_list_follows

pytestmark = pytest.mark.e2e

#: Paused for a moment and unpaused again (in ``finally``): no scenario runs while this test does.
DAG = "e2e_dependent"


def test_the_paused_list_names_exactly_the_paused_dags(e2e: E2E) -> None:
    """``paused_dags`` on a real Airflow: a DAG shows once paused, and no unpaused DAG ever shows."""
    assert_paused_list_follows(e2e.stack, ALL_DAGS, DAG)
