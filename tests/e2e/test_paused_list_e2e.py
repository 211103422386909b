"""The paused-DAG list the actuator's courtesy check relies on, against a real Airflow 3.3 (``GET /api/v2/dags``)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from coordinator.airflow_api import AirflowClient
from coordinator.settings import InstanceSettings
from tests.e2e.harness import ALL_DAGS, E2E

pytestmark = pytest.mark.e2e

#: Paused for a moment and unpaused again (in ``finally``): no scenario runs while this test does.
DAG = "e2e_dependent"


def test_the_paused_list_names_exactly_the_paused_dags(e2e: E2E) -> None:
    """``paused_dags`` on a real Airflow: a DAG shows once paused, and no unpaused DAG ever shows."""
    stack = e2e.stack
    settings = InstanceSettings(url=stack.url, username=stack.username, password=stack.password)

    async def paused() -> frozenset[str]:
        async with AirflowClient(settings) as client:
            return await client.paused_dags()

    assert not set(ALL_DAGS) & asyncio.run(paused())
    status, body = stack.request("PATCH", f"/api/v2/dags/{quote(DAG)}", {"is_paused": True})
    try:
        assert status == 200, body
        assert set(ALL_DAGS) & asyncio.run(paused()) == {DAG}
    finally:
        stack.unpause([DAG])
    assert not set(ALL_DAGS) & asyncio.run(paused())
