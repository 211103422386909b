"""The watcher keeps at most a few calls in flight to one Airflow (``airflow/requests.py``' **Calls at once**): each
holds one of the api-server's database connections, which that Airflow's tasks need too. A wide fan-out whose creates
Airflow answers slowly, counted by the fake Airflow's own peak of requests in flight."""

from __future__ import annotations

import pytest

from tests.scenario.conftest import ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario

#: Dependents made due at once by one success: more than twice the default bound.
FAN = [f"fan_{i:02d}" for i in range(20)]
#: How long the fake Airflow holds each create: long enough that the bound, not the answers, decides how many overlap.
SLOW_CREATE_S = 3.0


@pytest.mark.parametrize(("env", "bound"), [({}, 8), ({"COORDINATOR_AIRFLOW_MAX_CALLS": "3"}, 3)],
                         ids=["default", "configured"])  # fmt: skip
def test_a_wide_fan_out_keeps_at_most_the_bound_of_calls_in_flight(
    stack: Stack, env: dict[str, str], bound: int
) -> None:
    """20 dependents due at once, each create answered after 3 s: exactly the bound of calls (8 by default, or
    COORDINATOR_AIRFLOW_MAX_CALLS) is in flight at the most, never more, and each DAG is created once."""
    for dag in [ROOT_DAG, *FAN]:
        stack.fake.add_dag(dag)
    stack.set_deps({dag: ROOT_DAG for dag in FAN})
    p = new_partition()
    stack.start_watcher(**env)
    stack.fake.delay_next(len(FAN), SLOW_CREATE_S, endpoint="trigger")
    stack.trigger_root(p)
    wait_for(lambda: all(stack.fake_runs(dag, p) for dag in FAN), "every dependent created", timeout=120)
    stack.settle()
    assert [len(stack.fake_runs(dag, p)) for dag in FAN] == [1] * len(FAN)
    assert stack.fake.peak_in_flight == bound
