"""``coordinator doctor`` on a graph that maps OpenLineage jobs: the receiver reachable, the token, the role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lineage.receiver_proc import TOKENS, ReceiverProc


def lineage_check(workdir: Path, etcd: str, prefix: str, **env: str) -> dict[str, Any]:
    """The "lineage receiver" line of ``doctor --format json`` run with ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "doctor", "--format", "json", "--etcd", etcd, "--prefix", prefix,
         "--deps", str(workdir / "dependencies.json")],
        env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    return checks["lineage receiver"]


def test_doctor_checks_the_receiver_its_token_and_its_role(
    etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """With the receiver's URL and a known token doctor says ok and names what it may write; an unknown token and a
    stopped receiver fail with the fix; no URL is a warning naming the settings."""
    receiver = ReceiverProc(etcd_endpoint, etcd_prefix, tmp_path).start()
    good, bad = tmp_path / "good.token", tmp_path / "bad.token"
    good.write_text(TOKENS["dbt"][0] + "\n")
    bad.write_text("nobody-knows-this\n")
    try:
        ok = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                           COORDINATOR_LINEAGE_TOKEN_FILE=str(good))  # fmt: skip
        assert ok["status"] == "ok" and "token 'dbt' known; may write analytics" in ok["summary"], ok
        refused = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                                COORDINATOR_LINEAGE_TOKEN_FILE=str(bad))  # fmt: skip
        assert refused["status"] == "fail" and "refused the token (401)" in refused["summary"], refused
    finally:
        receiver.stop()
    gone = lineage_check(tmp_path, etcd_endpoint, etcd_prefix, COORDINATOR_LINEAGE_URL=receiver.url,
                         COORDINATOR_LINEAGE_TOKEN_FILE=str(good))  # fmt: skip
    assert gone["status"] == "fail" and "did not answer" in gone["summary"] and "lineage serve" in gone["fix"], gone
    unset = lineage_check(tmp_path, etcd_endpoint, etcd_prefix)
    assert unset["status"] == "warn" and "COORDINATOR_LINEAGE_URL" in unset["fix"], unset
