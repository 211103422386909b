"""An Airflow that refuses the watcher's password: one backoff for the whole instance, not one per pending trigger;
the corrected password file is read at the next try, and every intent then completes exactly once, without a restart.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from tests.scenario.conftest import ROOT_DAG, Stack, new_partition, wait_for

pytestmark = pytest.mark.scenario

FANOUT = tuple(f"fan_{i:02d}" for i in range(20))
#: The backoff of the test: steps of 1, 2, 4, 4, ... s (jittered down by at most a fifth); the defaults are 5 s and
#: 300 s, too slow for a test, the same code.
FIRST_STEP_S = 1.0
MAX_STEP_S = 4.0
#: How long the refused password is left in place: about five steps.
REFUSED_WINDOW_S = 12.0
#: Logins the window may see: the first one, then one per step (1 + 2 + 4 + 4 s: four more within 12 s, jitter may
#: make it five), and slack for a probe at the window's edge. Per key, 20 pending triggers retried every second
#: (COORDINATOR_ERROR_RETRY_S=1 in these tests) made over 200.
MAX_LOGINS = 8


def _metric(url: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and 'instance="default"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_refused_password_backs_off_per_instance_and_a_corrected_file_recovers_without_restart(
    stack: Stack, tmp_path: Path
) -> None:
    """20 pending triggers against a refused password make one login per backoff step (counted at the fake), doctor and
    the metric say the instance refuses and since when; the corrected file is read at the next step and each of the 20
    runs is created exactly once, by the same watcher process."""
    fake = stack.fake
    for dag in FANOUT:
        fake.add_dag(dag)
    stack.set_deps({dag: ROOT_DAG for dag in FANOUT})
    secret = tmp_path / "airflow-password"
    secret.write_text("not-the-password\n")
    watcher = stack.start_watcher(
        COORDINATOR_AIRFLOW_PASSWORD=None,
        COORDINATOR_AIRFLOW_PASSWORD_FILE=str(secret),
        COORDINATOR_AIRFLOW_REFUSED_BACKOFF_S=str(FIRST_STEP_S),
        COORDINATOR_AIRFLOW_REFUSED_BACKOFF_MAX_S=str(MAX_STEP_S),
    )
    url = watcher.http_url()
    p = new_partition()
    stack.trigger_root(p)

    wait_for(lambda: fake.calls("login") >= 1, "the first login")
    first = time.monotonic()
    watcher.wait_log(r"airflow\.refusing instance=default status=401")
    since = wait_for(lambda: _metric(url, "coordinator_airflow_refusing_since_timestamp_seconds"), "the metric")
    assert _metric(url, "coordinator_airflow_refusing") == 1.0
    assert abs(since - time.time()) < 120, since
    presence = stack.keys.watcher_key("w1")
    wait_for(lambda: b'"refusing":[{"instance":"default"' in (stack.etcd.get(presence) or b""), "the presence value")
    doctor = stack.cli("doctor", airflow=True, check=False)
    assert "refuses the watcher's credentials" in doctor.stdout, doctor.stdout
    assert "refuses us since" in doctor.stdout and "no restart needed" in doctor.stdout, doctor.stdout

    time.sleep(max(0.0, REFUSED_WINDOW_S - (time.monotonic() - first)))  # a rate needs a window
    logins = fake.calls("login")
    assert 2 <= logins <= MAX_LOGINS, f"{logins} logins in {REFUSED_WINDOW_S:g} s with 20 pending triggers"
    assert all(fake.runs(dag) == [] for dag in FANOUT)
    assert fake.calls("trigger") == 0  # nothing but logins reached Airflow: every call waited behind the one backoff

    secret.write_text(f"{fake.password}\n")  # corrected, the watcher untouched
    pid = watcher.pid

    # One step (4 s) for the next probe, then the parked keys at once; generous for a loaded machine.
    stack.wait_confirmed(p, FANOUT, timeout=60)
    stack.settle()
    assert watcher.alive and watcher.pid == pid
    stack.assert_once(p, FANOUT)
    for dag in FANOUT:
        assert fake.creates(dag) == 1, dag
    print(f"logins: {logins} in the refused window, {fake.calls('login')} in all; triggers: {fake.calls('trigger')}")
    assert fake.calls("login") <= logins + 2  # one login for the probe (two if it met the old token's last step)
    wait_for(lambda: _metric(url, "coordinator_airflow_refusing") == 0.0, "the metric cleared")
    assert _metric(url, "coordinator_airflow_refusing_since_timestamp_seconds") == 0.0
