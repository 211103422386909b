"""The README's "Installing into an existing Airflow", step by step, on the session's real Airflow 3.3.

The commands come from the README itself: every fenced block preceded by ``<!-- readme-e2e: NAME -->`` is run as
written in bash, in the order of :data:`STEPS`, so the README cannot drift from what works. Only the deployment's own
values are replaced (:data:`PLACEHOLDERS`: etcd's address, the prefix, Airflow's URL, the password file, the date), and
each replacement must be used, so renaming one in the README fails here too. Exported variables carry over from
block to block as in one terminal; the first blocks run in Airflow's environment (the session stack's).

What the session's Airflow did before this test, because a running Airflow cannot be restarted for one test: the
package is installed (step 1), the scheduler, DAG processor and api-server run with the plugin's environment and
``PIPELINE_01_SCHEDULE=none`` (step 2's restart), and the api-server has the watcher's user of step 5 (the simple
auth manager reads its users only at start; the test checks the README's line is that configuration). Everything else
is done here: the DAG files are copied again, the pipelines are paused first so that step 4 is what unpauses them, and
the watcher logs in as that user, not as the admin.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.core.activation import Activation
from coordinator.core.model import RunState
from coordinator.spec_file import load_spec
from tests.e2e.harness import (
    E2E,
    PIPELINES,
    REPO,
    UPSTREAMS,
    WATCHER_USER,
    assert_started_after,
    timeline,
    wait_for,
)

pytestmark = pytest.mark.e2e  # runs on the session's real Airflow 3.3: outside `make fast`

README = REPO / "README.md"
BLOCK_RE = re.compile(r"<!-- readme-e2e: ([\w-]+) -->\n```bash\n(.*?)\n```", re.DOTALL)
#: The marked blocks, in the order the README gives them.
STEPS = ["plugin", "example-dags", "unpause", "airflow3-simple-user", "watcher-env", "watch", "trigger", "status",
         "doctor"]  # fmt: skip
README_DATE = "2026-01-01"


def readme_blocks() -> dict[str, str]:
    """NAME -> the bash text of each marked block; the README must mark exactly STEPS, in that order."""
    found = BLOCK_RE.findall(README.read_text(encoding="utf-8"))
    assert [name for name, _ in found] == STEPS, "the README's readme-e2e blocks changed: update STEPS and this test"
    return dict(found)


class Shell:
    """One terminal: runs README blocks with bash -euo pipefail and keeps what they export for the next block."""

    def __init__(self, env: dict[str, str], placeholders: dict[str, str], log_dir: Path, partition: str) -> None:
        self.env = env
        self.partition = partition
        self.placeholders = placeholders
        self.used: set[str] = set()
        self.log_dir = log_dir
        self._background: list[subprocess.Popen[bytes]] = []

    def script(self, block: str) -> str:
        for placeholder, value in self.placeholders.items():
            if placeholder in block:
                self.used.add(placeholder)
                block = block.replace(placeholder, value)
        return block

    def run(self, name: str, block: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run a block to completion from the checkout; fail with its output if it exits non-zero."""
        env_file = self.log_dir / f"{name}.env"
        text = f"set -euo pipefail\n{self.script(block)}\nenv -0 > {env_file}\n"
        done = subprocess.run(
            ["bash", "-c", text], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode == 0, f"README step {name!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        exported = env_file.read_text(encoding="utf-8").split("\0")
        self.env = dict(item.split("=", 1) for item in exported if "=" in item)
        return done

    def start(self, name: str, block: str) -> subprocess.Popen[bytes]:
        """Start a long-running block (the watcher) in its own process group; its output goes to ``<name>.log``."""
        with (self.log_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"set -euo pipefail\n{self.script(block)}"],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._background.append(proc)
        return proc

    def stop(self) -> None:
        """TERM each background group, KILL what is left after 10 s."""
        for proc in self._background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._background.clear()


@pytest.fixture
def shell(e2e: E2E) -> Iterator[Shell]:
    """A terminal in Airflow's environment with the deployment's values for the README's placeholders."""
    log_dir = e2e.work_dir / "readme"
    log_dir.mkdir(exist_ok=True)
    password_file = log_dir / "airflow_password"
    password_file.write_text(e2e.stack.user_password(WATCHER_USER), encoding="utf-8")
    password_file.chmod(0o600)
    partition = e2e.new_partition()
    placeholders = {
        "http://etcd-1:2379,http://etcd-2:2379": e2e.etcd_endpoint,
        "COORDINATOR_PREFIX=/coordinator": f"COORDINATOR_PREFIX={e2e.prefix}",
        "http://airflow:8080": e2e.stack.url,
        "/run/secrets/airflow_password": str(password_file),
        README_DATE: partition[:10],
    }
    env = {
        **e2e.stack.environment(),
        # Not README steps: the host is shared (another watcher may hold the default port 9465), and the session's
        # Airflow runs on SQLite, for which the README says to send one call at a time.
        "COORDINATOR_HTTP": "127.0.0.1:0",
        "COORDINATOR_MAX_CONCURRENT_ACTIONS": "1",
    }
    terminal = Shell(env, placeholders, log_dir, partition)
    try:
        yield terminal
    finally:
        terminal.stop()
        e2e.stack.unpause(PIPELINES)  # whatever step 4 did, the session's other modules need them unpaused


def paused(e2e: E2E, dag_id: str) -> bool:
    status, body = e2e.stack.request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}")
    assert status == 200, body
    return bool(body["is_paused"])


def test_the_readme_existing_airflow_path_works_as_written(e2e: E2E, shell: Shell) -> None:
    """Following the README's steps on a real Airflow 3.3 runs the cascade 02..07 once each, and doctor exits 0."""
    blocks = readme_blocks()
    partition = shell.partition

    # Step 2: the plugin's environment and its check.
    check = shell.run("plugin", blocks["plugin"])
    assert "Traceback" not in check.stderr

    # Step 3: the example DAG files, copied from the checkout into Airflow's dags folder.
    shell.run("example-dags", blocks["example-dags"])
    for name in ["example_pipeline.py", *(f"{dag}.py" for dag in PIPELINES)]:
        assert (e2e.stack.dags_folder / name).read_bytes() == (REPO / "dags" / name).read_bytes(), name

    # Step 4: paused now, as Airflow leaves new DAGs; the README's command is what unpauses them.
    for dag in PIPELINES:
        status, body = e2e.stack.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": True})
        assert status == 200, body
    shell.run("unpause", blocks["unpause"])
    assert [dag for dag in PIPELINES if paused(e2e, dag)] == []

    # Step 5: the session's api-server was started with exactly the README's users line.
    name, _, value = blocks["airflow3-simple-user"].removeprefix("export ").partition("=")
    assert e2e.stack.environment()[name] == value
    assert f"{WATCHER_USER}:" in value

    # Step 6: validate --airflow, as the watcher's user.
    validated = shell.run("watcher-env", blocks["watcher-env"])
    assert f"instance default ({e2e.stack.url}): Airflow 3.3.2: 7 of 7 DAGs exist" in validated.stdout
    assert validated.stderr == "", validated.stderr
    assert shell.env["COORDINATOR_AIRFLOW_USERNAME"] == WATCHER_USER

    # Step 7: the watcher leads and adopts the README's graph before anything happens.
    watcher = shell.start("watch", blocks["watch"])
    digest = load_spec(REPO / "dependencies.json").digest

    def adopted() -> bool:
        assert watcher.poll() is None, f"the watcher exited; see {shell.log_dir / 'watch.log'}"
        raw = e2e.read_key(e2e.keys.config_key("graph"))
        return (
            e2e.read_key(e2e.keys.leader) is not None
            and raw is not None
            and (Activation.model_validate_json(raw).digest == digest)
        )

    wait_for(adopted, 60, "the README's watcher to lead with dependencies.json")

    # Step 8: trigger the root; the cascade runs each dependent once, in order.
    shell.run("trigger", blocks["trigger"])
    e2e.wait_for_run_record(
        "07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=240, what="success of 07_pipeline"
    )
    runs = {dag: e2e.only_run(dag, partition) for dag in PIPELINES}
    for dag, upstreams in UPSTREAMS.items():
        assert runs[dag].run_id == f"coordinator__{partition}", runs[dag]
        assert runs[dag].state == "success", runs[dag]
        assert_started_after(runs[dag], [runs[u] for u in upstreams])
    asked = shell.run("status", blocks["status"])
    assert "07_pipeline is up to date" in asked.stdout, asked.stdout

    # The last step: doctor finds nothing to fix.
    doctor = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{shell.script(blocks['doctor'])}"],
        cwd=REPO, env=shell.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    print(f"\nREADME walkthrough, cascade {timeline(runs.values(), runs['01_pipeline'].start_date)}; doctor:\n"
          f"{doctor.stdout}")  # fmt: skip
    assert doctor.returncode == 0, f"doctor:\n{doctor.stdout}\n{doctor.stderr}"

    assert set(shell.placeholders) == shell.used, "a placeholder is no longer in the README's blocks"
