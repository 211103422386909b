"""docs/howto/etcd.md's TLS section says what the code does: it names every problem the etcd adapter can name, and
its example of `coordinator watch` without a client certificate is the adapter's message and fix line verbatim."""

from __future__ import annotations

from pathlib import Path

from coordinator.etcd.tls_hint import TlsProblem, classify
from coordinator.runtime.settings import EtcdSettings, parse_endpoints

PAGE = Path(__file__).resolve().parents[1] / "docs" / "howto" / "etcd.md"


def test_the_tls_section_names_every_problem() -> None:
    """Every problem name of coordinator.etcd.tls_hint has its row in the page's table."""
    text = PAGE.read_text(encoding="utf-8")
    missing = [p.value for p in TlsProblem if f"| `{p.value}` |" not in text]
    assert not missing, missing


def test_the_example_is_what_watch_prints() -> None:
    """The page's example of a missing client certificate is the adapter's error and fix line, verbatim."""
    settings = EtcdSettings(endpoints=parse_endpoints("https://etcd-client.coordinator.svc:2379"))
    found = classify("SSL_ERROR_SSL: error:10000412:SSL routines:OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE: OK",
                     settings, 0)  # fmt: skip
    assert found is not None
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    assert f"error: etcd: {found}" in lines
    assert f"fix: {found.fix}" in lines
