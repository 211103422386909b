"""The shipped alert rules in a real Prometheus (Debian's ``prometheus`` binary) scraping real ``coordinator watch``
processes and a real OpenLineage receiver (``coordinator lineage serve``, job ``coordinator-lineage`` as the chart's
PodMonitor names it) on a real etcd (the fake Airflow at the HTTP boundary): each named fault is made, its alert goes
to firing, the fault is undone, and the alert resolves.

The rules are the shipped file with its durations shortened: every ``for:`` to FOR and every range window (``[10m]``)
to WINDOW; the rest of each expression, its labels and annotations are untouched. So a fault shows as firing, and an
alert over a rate resolves, in seconds instead of minutes; promtool's unit tests (tests/test_prometheus_rules.py)
hold the real durations. Prometheus scrapes and evaluates every second, binds
127.0.0.1 on a free port, and is stopped by PID (TERM, then KILL) whatever happens.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import dashboard
from devtools.procs import free_port, stop_child
from devtools.prometheus import RULES, binary
from tests.lineage.receiver_proc import ReceiverProc
from tests.scenario.conftest import Stack, new_partition, wait_for
from tests.scenario.test_etcd_alarm import fill_until_nospace

pytestmark = pytest.mark.scenario

#: Every alert's ``for:`` in the test's copy of the rules: long enough to pass through pending, short for a test.
FOR = "2s"
#: Every range window in the test's copy: several scrapes (1 s apart), so a rate is defined, and gone soon after.
WINDOW = "10s"
#: Generous: scrape (1 s) + evaluation (1 s) + FOR + the watcher's own probe periods (its alarm read runs every 5 s),
#: on a loaded 2-core machine.
ALERT_S = 45.0


#: The receiver's scrape job: the name the shipped lineage rules select (the chart's lineage PodMonitor sets it).
LINEAGE_JOB = "coordinator-lineage"


class Prometheus:
    """One Prometheus server of the test's own on 127.0.0.1, scraping ``targets`` as job ``coordinator`` and
    ``lineage`` (the receivers) as job :data:`LINEAGE_JOB`."""

    def __init__(self, workdir: Path, targets: list[str], lineage: list[str]) -> None:
        rules: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = FOR
                rule["expr"] = re.sub(r"\[\d+[smh]\]", f"[{WINDOW}]", rule["expr"])
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {"job_name": "coordinator", "static_configs": [{"targets": targets}]},
                {"job_name": LINEAGE_JOB, "static_configs": [{"targets": lineage}]},
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                [binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
            )  # fmt: skip

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: {self.log_path.read_text(errors='replace')[-2000:]}"
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=5) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def firing(self) -> set[str]:
        """The names of the alerts firing now (not pending)."""
        return {name for name, _ in self.firing_jobs()}

    def firing_jobs(self) -> set[tuple[str, str]]:
        """(alert name, job label) of each alert firing now."""
        alerts = self.get("/api/v1/alerts")["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("job", "")) for a in alerts if a["state"] == "firing"}

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (the series it returns)."""
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def stop(self) -> None:
        stop_child(self.proc, 10.0, "prometheus")


def disarm_nospace(stack: Stack) -> None:
    """What doctor's fix does, over etcd's gateway: compact the history, defragment, disarm NOSPACE."""
    stack.etcd.compact(stack.etcd.revision())
    stack.etcd.call("/v3/maintenance/defragment", {}, timeout=30.0)
    alarms = stack.etcd.call("/v3/maintenance/alarm", {"action": "GET"}).get("alarms", [])
    for alarm in alarms:
        stack.etcd.call("/v3/maintenance/alarm", {"action": "DEACTIVATE", "memberID": alarm["memberID"],
                                                  "alarm": alarm["alarm"]})  # fmt: skip


def test_each_fault_fires_its_alert_in_a_real_prometheus_and_resolves_after(quota_stack: Stack, tmp_path: Path) -> None:
    """In a real Prometheus with the shipped rules: one watcher alone fires CoordinatorNoStandby (a second resolves
    it); a DAG Airflow does not have fires CoordinatorFailedIntents; etcd's NOSPACE alarm fires CoordinatorEtcdAlarm;
    etcd killed fires CoordinatorEtcdUnreachable for the watchers' job and CoordinatorLineageEtcdUnreachable for the
    receiver's (never the watchers' alert for the receiver); an Airflow refusing the watcher's login fires
    CoordinatorAirflowAuthFailing; each resolves once its fault is undone. Then every query of the
    shipped Grafana dashboard returns series from that Prometheus."""
    stack = quota_stack
    first = free_port()
    targets = [f"127.0.0.1:{port}" for port in (first, free_port(exclude=[first]))]
    stack.start_watcher("w1", COORDINATOR_HTTP=targets[0])
    (tmp_path / "receiver").mkdir()
    receiver = ReceiverProc(stack.endpoint, "/lineage-alerts", tmp_path / "receiver")
    stack.add_cleanup(receiver.stop)
    receiver.start()
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prometheus = Prometheus(workdir, targets, [f"127.0.0.1:{receiver.http_port}"])
    stack.add_cleanup(prometheus.stop)
    try:
        wait_for(prometheus.ready, "prometheus ready", ALERT_S, interval=0.5)

        def fires(alert: str) -> None:
            wait_for(lambda: alert in prometheus.firing(), f"{alert} firing", ALERT_S, interval=0.5)

        def resolves(alert: str) -> None:
            wait_for(lambda: alert not in prometheus.firing(), f"{alert} resolved", ALERT_S, interval=0.5)

        # No standby: one watcher alone; a second one resolves it.
        fires("CoordinatorNoStandby")
        assert "CoordinatorNoLeader" not in prometheus.firing()
        stack.start_watcher("w2", ready="loaded", COORDINATOR_HTTP=targets[1])
        resolves("CoordinatorNoStandby")

        # Failed intents: Airflow answers 404 for a DAG the graph triggers; once it exists the intent is confirmed.
        stack.fake.set_missing("03_pipeline")
        partition = new_partition()
        stack.trigger_root(partition)
        fires("CoordinatorFailedIntents")
        stack.fake.set_missing("03_pipeline", False)
        stack.wait_confirmed(partition)
        resolves("CoordinatorFailedIntents")
        stack.settle()

        # etcd's NOSPACE alarm: etcd refuses every write until compacted, defragmented and disarmed.
        assert fill_until_nospace(stack) > 0
        fires("CoordinatorEtcdAlarm")
        disarm_nospace(stack)
        resolves("CoordinatorEtcdAlarm")

        # etcd unreachable: killed, then started again on the same ports and data. The watchers and the receiver
        # each fire their own alert, and the watchers' never names the receiver's job.
        assert stack.server is not None
        stack.server.kill()
        fires("CoordinatorEtcdUnreachable")
        fires("CoordinatorLineageEtcdUnreachable")
        jobs = prometheus.firing_jobs()
        assert ("CoordinatorEtcdUnreachable", LINEAGE_JOB) not in jobs, jobs
        assert ("CoordinatorLineageEtcdUnreachable", LINEAGE_JOB) in jobs, jobs
        stack.server.start()
        resolves("CoordinatorEtcdUnreachable")
        resolves("CoordinatorLineageEtcdUnreachable")

        # An Airflow refusing logins: the password changed and every token expired, while a cascade needs a trigger.
        stack.wait_answered()
        stack.fake.password = "rotated"
        stack.fake.expire_tokens()
        refused = new_partition()
        stack.trigger_root(refused)
        fires("CoordinatorAirflowAuthFailing")
        stack.fake.password = "admin"
        stack.wait_confirmed(refused)
        resolves("CoordinatorAirflowAuthFailing")

        # The dashboard: each panel's query, with Grafana's variables as it would fill them, returns series.
        model = dashboard.build()
        for title, expr in dashboard.queries(model):
            concrete = expr.replace("$job", "coordinator").replace("$__rate_interval", "1m")
            assert prometheus.query(concrete), f"panel {title!r}: no series for {concrete}"
    except BaseException:
        print(f"\n===== prometheus log =====\n{prometheus.log_path.read_text(errors='replace')[-3000:]}")
        print(f"\n===== receiver log =====\n{receiver.log()[-3000:]}")
        raise
