"""etcd's alarms as the operator sees them, without a server: doctor's verdict for each alarm and for an unreadable
list, the etcdctl words its fix starts with, the readiness verdict and the gauge. (A real etcd filled to its quota:
tests/scenario/test_etcd_alarm.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.cli.doctor_cmds import etcdctl_words
from coordinator.diagnosis import CheckStatus, DoctorFacts, EtcdAlarm, diagnose
from coordinator.runtime.health import Health
from coordinator.runtime.metrics import Metrics
from coordinator.runtime.settings import Settings

CTL = "etcdctl --endpoints=http://etcd-1:2379,http://etcd-2:2379"


def alarm_check(alarms: list[EtcdAlarm] | None, error: str | None = None) -> dict[str, object]:
    facts = DoctorFacts(settings=(), prefix="/coordinator", etcd_endpoints="http://etcd-1:2379,http://etcd-2:2379",
                        etcd_revision=4242, etcd_alarms=alarms, alarms_error=error, etcdctl=CTL)  # fmt: skip
    (check,) = [c for c in diagnose(facts, datetime.now(UTC)) if c.name == "etcd alarms"]
    return check.model_dump()


def test_nospace_fails_with_compact_defrag_disarm_at_the_current_revision() -> None:
    """NOSPACE fails naming the member, and the fix is compact at doctor's revision, defrag --cluster, disarm."""
    check = alarm_check([EtcdAlarm("NOSPACE", "8e9e05c52164694d")])
    assert check["status"] is CheckStatus.FAIL and "NOSPACE" in str(check["summary"])
    assert check["fix"] == f"{CTL} compact 4242 && {CTL} defrag --cluster && {CTL} alarm disarm"
    assert "NOSPACE on member 8e9e05c52164694d" in check["details"]  # type: ignore[operator]


def test_corrupt_fails_with_etcds_replace_the_member_procedure() -> None:
    """CORRUPT fails too, and its fix finds the member whose hash differs before the disarm (no compaction)."""
    check = alarm_check([EtcdAlarm("CORRUPT", "1")])
    assert check["status"] is CheckStatus.FAIL and "CORRUPT" in str(check["summary"])
    assert f"{CTL} endpoint hashkv --cluster" in str(check["fix"]) and f"{CTL} alarm disarm" in str(check["fix"])
    assert "compact" not in str(check["fix"])


@pytest.mark.parametrize(
    ("alarms", "error", "status"),
    [([], None, CheckStatus.OK), (None, "PERMISSION_DENIED: permission denied", CheckStatus.WARN)],
    ids=["none-raised", "list-unreadable"],
)
def test_no_alarm_passes_and_an_unreadable_list_only_warns(
    alarms: list[EtcdAlarm] | None, error: str | None, status: CheckStatus
) -> None:
    """No alarm is ok; a list the user may not read is a warning naming why, never a failure."""
    check = alarm_check(alarms, error)
    assert check["status"] is status
    if error is not None:
        assert error in str(check["summary"]) and f"{CTL} alarm list" in str(check["fix"])


def test_etcdctl_words_reach_the_cluster_as_the_configured_user(tmp_path: Path) -> None:
    """The fix's etcdctl carries the endpoints, the user (etcdctl asks the password) and the TLS files doctor used."""
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client-key.pem"))
    settings = Settings(etcd_endpoints="https://etcd-1:2379", etcd_username="ops", etcd_ca_file=ca,
                        etcd_cert_file=cert, etcd_key_file=key)  # fmt: skip
    assert etcdctl_words(settings) == (
        f"etcdctl --endpoints=https://etcd-1:2379 --user=ops --cacert={ca} --cert={cert} --key={key}"
    )
    assert (
        etcdctl_words(Settings(etcd_endpoints="http://127.0.0.1:2379")) == "etcdctl --endpoints=http://127.0.0.1:2379"
    )


def test_readiness_is_503_etcd_alarm_while_an_alarm_is_raised() -> None:
    """A loaded watcher whose etcd answers is not ready while NOSPACE is raised, saying so, and ready once cleared."""
    health = Health(clock=lambda: 100.0)
    health.view_loaded()
    health.etcd_answered()
    health.alarms = ("NOSPACE",)
    verdict = health.readiness()
    assert (verdict.ok, verdict.reason) == (False, "etcd_alarm")
    assert "NOSPACE" in verdict.detail and "coordinator doctor" in verdict.detail
    health.alarms = ()
    assert health.readiness().ok


def test_the_alarm_gauge_has_a_series_per_alarm_one_while_raised() -> None:
    """coordinator_etcd_alarm is 1 for a raised alarm and 0 for the others, and back to 0 once cleared."""
    metrics = Metrics()

    def values() -> dict[str, float | None]:
        return {a: metrics.registry.get_sample_value("coordinator_etcd_alarm", {"alarm": a})
                for a in ("NOSPACE", "CORRUPT")}  # fmt: skip

    metrics.etcd_alarms(["NOSPACE"])
    assert values() == {"NOSPACE": 1.0, "CORRUPT": 0.0}
    metrics.etcd_alarms([])
    assert values() == {"NOSPACE": 0.0, "CORRUPT": 0.0}
