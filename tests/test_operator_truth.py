"""What operators are told, checked against a real etcd (the fake Airflow at the HTTP boundary): an https:// endpoint
of a plain etcd, refusals left by DAGs removed from the graph, watchers running different graphs, and a misspelt
upstream adopted by a live watcher."""

from __future__ import annotations

from tests.test_doctor import checks_of, cli_env, run_cli


def test_an_https_endpoint_of_a_plain_etcd_names_the_scheme_and_the_fix(etcd_endpoint: str) -> None:
    """status and doctor against a real plain etcd given as https:// say that etcd does not speak TLS and to use
    http://HOST:PORT (or enable TLS), not only "handshake failed"."""
    https = etcd_endpoint.replace("http://", "https://")
    where = etcd_endpoint.removeprefix("http://")
    env = cli_env(https, "/coordinator", "http://127.0.0.1:9")
    status = run_cli("status", env=env)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"etcd at {where} does not speak TLS" in status.stderr, status.stderr
    assert f"use {etcd_endpoint}" in status.stderr and "enable TLS on etcd" in status.stderr
    check = checks_of(run_cli("doctor", "--format", "json", env=env))["etcd"]
    assert check["status"] == "fail" and f"etcd at {where} does not speak TLS" in check["summary"], check
    assert f"COORDINATOR_ETCD_ENDPOINTS={etcd_endpoint}" in check["fix"], check
