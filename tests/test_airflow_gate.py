"""One backoff per Airflow instance (coordinator/airflow/gate.py): the pure gate, then the client's use of it at the
HTTP boundary against the fake Airflow, with a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from coordinator.airflow import AirflowClient
from coordinator.airflow.gate import InstanceGate, Refusal
from coordinator.errors import AirflowAuthError, AirflowBackingOff, AirflowUnavailable
from coordinator.runtime.retry import RetryPolicy
from coordinator.runtime.settings import InstanceSettings
from tests.support.fake_airflow import FakeAirflow

POLICY = RetryPolicy(initial_s=1.0, max_s=4.0)  # no jitter: steps of exactly 1, 2, 4, 4 s


def gate(told: list[Refusal | None] | None = None) -> InstanceGate:
    sink = told if told is not None else []
    return InstanceGate(POLICY, probe_hold_s=10.0, on_change=sink.append)


def step(g: InstanceGate, now: float) -> float:
    """One refused probe at ``now``: the step it starts."""
    admission = g.admit(now)
    assert admission.wait_s == 0
    refusal = g.refused(now, 1e9 + now, 401, "credentials refused", admission.epoch)
    assert refusal is not None
    return refusal.step_s


def test_steps_double_up_to_the_cap_and_one_call_probes_per_step() -> None:
    """Refusals in a row wait 1, 2, 4, 4 s; within a step calls are held back; after it one call is the probe."""
    g = gate()
    assert [step(g, t) for t in (0.0, 1.0, 3.0, 7.0)] == [1.0, 2.0, 4.0, 4.0]
    assert g.admit(8.0).wait_s == pytest.approx(3.0)  # held back within the step
    probe = g.admit(11.0)
    assert (probe.wait_s, probe.probe) == (0.0, True)
    assert g.admit(11.0).wait_s == 10.0  # the probe is in flight: the others wait for its outcome
    refusal = g.refusal
    assert refusal is not None and refusal.attempts == 4 and refusal.since == 1e9


def test_calls_in_flight_that_meet_one_refusal_count_one_step() -> None:
    """Twenty calls admitted together and refused together start one step, not twenty."""
    g = gate()
    admissions = [g.admit(0.0) for _ in range(20)]
    for admission in admissions:
        g.refused(0.0, 1e9, 401, "credentials refused", admission.epoch)
    refusal = g.refusal
    assert refusal is not None and (refusal.attempts, refusal.step_s) == (1, 1.0)


def test_accepted_opens_resets_and_tells_and_a_stale_success_does_not() -> None:
    """An answer in the current epoch opens the gate (told None) and the next refusal starts at the first step again; a
    success of a call admitted before the latest refusal changes nothing."""
    told: list[Refusal | None] = []
    g = gate(told)
    early = g.admit(0.0)
    step(g, 0.0)
    step(g, 1.0)
    g.accepted(early.epoch)  # admitted before the refusals: stale
    assert g.refusal is not None
    probe = g.admit(3.0)
    g.accepted(probe.epoch)
    assert g.refusal is None and told[-1] is None and len(told) == 3
    assert step(g, 4.0) == 1.0


def test_a_probe_without_an_answer_lets_the_next_call_probe() -> None:
    """A probe that ended in a 5xx or no answer proves nothing: the gate stays closed and the next call probes."""
    g = gate()
    step(g, 0.0)
    assert g.admit(1.0).probe
    g.released()
    assert g.admit(1.0).probe


def test_throttled_honours_retry_after_capped_and_keeps_the_refusal_steps() -> None:
    """429 with Retry-After holds calls back that long (at most the cap) and does not lengthen the next refusal's
    step."""
    g = gate()
    refusal = g.throttled(0.0, 1e9, 3.0)
    assert (refusal.status, refusal.step_s) == (429, 3.0)
    assert g.admit(2.0).wait_s == pytest.approx(1.0)
    assert g.throttled(3.0, 1e9, 3600.0).step_s == 4.0  # capped
    assert step(g, 7.0) == 1.0  # the refusals' own backoff starts at its first step


def test_ready_hands_the_probe_to_one_planner() -> None:
    """Work planned for a refusing instance waits for the step; then one caller gets the probe, the others wait."""
    g = gate()
    step(g, 0.0)
    assert g.ready(0.5) == pytest.approx(0.5)
    assert g.ready(1.0) == 0.0
    assert g.ready(1.0) == 10.0


# -- the client at the HTTP boundary -------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    with FakeAirflow(["d"]) as f:
        yield f


def test_wrong_password_file_one_login_for_many_calls_then_the_corrected_file_is_read(
    fake: FakeAirflow, tmp_path: Path
) -> None:
    """Twenty concurrent calls with a wrong password make one login; calls within the step make none (held back, no
    request); the file corrected, the probe after the step reads it and succeeds, without a new client."""
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    now = [1000.0]
    refusals: list[Refusal | None] = []

    async def main() -> None:
        settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("wrong"), password_file=secret)
        async with AirflowClient(settings, timeout_s=5.0, backoff=POLICY, clock=lambda: now[0],
                                 on_refusal=lambda instance, r: refusals.append(r)) as client:  # fmt: skip
            results = await asyncio.gather(*(client.get_dag("d") for _ in range(20)), return_exceptions=True)
            assert all(isinstance(r, AirflowAuthError) for r in results), results
            assert fake.calls("login") == 1
            for _ in range(20):
                with pytest.raises(AirflowBackingOff, match="not sent: the instance has refused us since"):
                    await client.get_dag("d")
            assert fake.calls("login") == 1 and fake.calls("get_dag") == 0
            secret.write_text(f"{fake.password}\n")
            now[0] += POLICY.initial_s
            assert (await client.get_dag("d")).dag_id == "d"
            assert fake.calls("login") == 2

    asyncio.run(main())
    assert [r is None for r in refusals] == [False, True]


def test_429_with_retry_after_holds_every_call_back_until_then(fake: FakeAirflow) -> None:
    """A 429 naming Retry-After holds the instance's calls back (no request) until then; then they go."""
    fake.retry_after_s = 30
    now = [1000.0]

    async def main() -> None:
        settings = InstanceSettings(url=fake.url, username="admin", password=SecretStr("admin"))
        async with AirflowClient(settings, timeout_s=5.0, backoff=RetryPolicy(1.0, 300.0), clock=lambda: now[0]) as c:
            await c.get_dag("d")
            fake.fail_next(1, 429, endpoint="get_dag")
            with pytest.raises(AirflowUnavailable):
                await c.get_dag("d")
            now[0] += 29
            with pytest.raises(AirflowBackingOff, match=r"throttled"):
                await c.get_dag("d")
            assert fake.calls("get_dag") == 2
            now[0] += 1
            assert (await c.get_dag("d")).dag_id == "d"

    asyncio.run(main())
