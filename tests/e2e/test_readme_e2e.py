"""The install guide, "Installing into an existing Airflow" (docs/howto/existing-airflow.md, cut from the README
into the docs site; "the README" below means that page), step by step, from the release artifacts, on a fresh
Airflow 3.3.

The commands come from the page itself: every fenced block preceded by ``<!-- readme-e2e: NAME -->`` is run as
written in bash, in the order of :data:`STEPS`, so the README cannot drift from what works. Only the deployment's own
values are replaced (:data:`PLACEHOLDERS`: etcd's ports, the prefix, Airflow's URL, the password file, the date), and
each replacement must be used, so renaming one in the README fails here too. Exported variables carry over from
block to block as in one terminal.

Where it runs is what a new user has: a clean temporary directory holding only ``dist/`` as
``python -m devtools.dist --no-image`` writes it (the example DAGs and ``dependencies.json`` of steps 3 and 6 come
from its examples archive, unpacked by step 1's own command), nothing of the repository; and "Airflow's
environment" is a fresh venv with Airflow 3.3 and the released wheel (devtools/release_venv.py, shared with
tests/test_release.py), never this checkout's editable install. Airflow's home starts empty (no ``dags/`` folder),
and the DAG processor scans for new files every 5 minutes as Airflow's default does, so the README's own ``mkdir``
and ``airflow dags reserialize`` are what make the DAGs exist for step 4.

What the test does that a user does in other terminals: it starts Airflow's components after step 2 (the README's
"restart ... with this environment"), from the README's own environment and simple-auth-manager users line (step
5's, parsed here because the api-server reads its users only at start), and it runs the README's trial etcd and
watcher blocks in the background. Every process it started is stopped by process group (TERM, then KILL), even when a
step fails; every wait is bounded and a failure names the step with its output or the log's last lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator import __version__
from coordinator.core.activation import Activation
from coordinator.core.model import RunState
from coordinator.runtime.spec_file import load_spec
from devtools.airflow_stack import AirflowStack
from devtools.procs import free_port, stop_groups
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
from tests.support.release import released_venv

pytestmark = pytest.mark.e2e  # starts a real etcd and Airflow 3.3 of its own: outside `make fast`

README = REPO / "docs" / "howto" / "existing-airflow.md"
BLOCK_RE = re.compile(r"<!-- readme-e2e: ([\w-]+) -->\n```bash\n(.*?)\n```", re.DOTALL)
#: The marked blocks, in the order the README gives them.
STEPS = ["install", "examples", "trial-etcd", "plugin", "example-dags", "unpause", "airflow3-simple-user",
         "watcher-password", "watcher-env", "sqlite", "watch", "trigger", "status", "doctor"]  # fmt: skip
README_DATE = "2026-01-01"
WHEEL = f"airflow_etcd_coordinator-{__version__}-py3-none-any.whl"
USERS_VARIABLE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"
#: Airflow's own defaults (the stacks of the other tests scan every 5 s): a new DAG file waits for the next scan.
AIRFLOW_DEFAULT_SCANS = {
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
}
_TAIL_CHARS = 4000


def readme_blocks() -> dict[str, str]:
    """NAME -> the bash text of each marked block; the README must mark exactly STEPS, in that order."""
    found = BLOCK_RE.findall(README.read_text(encoding="utf-8"))
    assert [name for name, _ in found] == STEPS, "the README's readme-e2e blocks changed: update STEPS and this test"
    return dict(found)


def tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-_TAIL_CHARS:]
    except OSError:
        return f"(no {path})"


def stop_group(proc: subprocess.Popen[bytes] | subprocess.Popen[str], what: str) -> None:
    """TERM the process group ``proc`` leads (a child it left behind included), TERM again, then KILL; reap ``proc``."""
    stop_groups({proc.pid: proc}, term_wait_s=10.0, second_term_wait_s=5.0, kill_wait_s=3.0, what=what)  # type: ignore[dict-item]


class Shell:
    """One terminal in ``cwd``: runs README blocks with bash -euo pipefail and keeps what they export."""

    def __init__(self, cwd: Path, env: dict[str, str], placeholders: dict[str, str], log_dir: Path) -> None:
        self.cwd = cwd
        self.env = env
        self.placeholders = placeholders
        self.used: set[str] = set()
        self.log_dir = log_dir
        self._background: dict[str, subprocess.Popen[bytes]] = {}

    def script(self, block: str) -> str:
        for placeholder, value in self.placeholders.items():
            if placeholder in block:
                self.used.add(placeholder)
                block = block.replace(placeholder, value)
        return block

    def run(
        self, name: str, block: str, timeout_s: float = 180.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a block to completion; fail with its output if it exits non-zero or outlives ``timeout_s`` (its
        whole process group is killed then, so a hung Airflow CLI cannot keep the test waiting on its pipes)."""
        env_file = self.log_dir / f"{name}.env"
        text = f"set -euo pipefail\n{self.script(block)}\nenv -0 > {env_file}\n"
        proc = subprocess.Popen(
            ["bash", "-c", text], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc, f"README step {name}")
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a process of another session holds its pipes: give up on them
                out, err = "", "(its output pipes stayed open)"
            raise AssertionError(f"README step {name!r} ran past {timeout_s:.0f} s:\n{out[-_TAIL_CHARS:]}\n"
                                 f"{err[-_TAIL_CHARS:]}") from None  # fmt: skip
        except BaseException:  # pytest-timeout's alarm, Ctrl-C: the block's processes must not outlive the test
            stop_group(proc, f"README step {name}")
            raise
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if not check:
            return done
        assert done.returncode == 0, (
            f"README step {name!r} exited {done.returncode}:\n{out[-_TAIL_CHARS:]}\n{err[-_TAIL_CHARS:]}"
        )
        exported = env_file.read_text(encoding="utf-8").split("\0")
        self.env = dict(item.split("=", 1) for item in exported if "=" in item)
        return done

    def start(self, name: str, block: str) -> subprocess.Popen[bytes]:
        """Start a long-running block (etcd, the watcher) in its own process group; its output goes to
        ``<name>.log``."""
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"set -euo pipefail\n{self.script(block)}"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._background[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self, *names: str) -> None:
        """Stop the named background blocks (all when none is named), the last started first."""
        for name in reversed([n for n in self._background if not names or n in names]):
            stop_group(self._background.pop(name), f"README step {name}")


class ReadmeAirflow(AirflowStack):
    """The test's Airflow: the simple auth manager's passwords stay where Airflow keeps them by default, the file
    the README's step 5 reads."""

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"


@dataclass
class Trial:
    """What a new user starts from: the clean directory (``dist/`` only) and the fresh venv of Airflow's
    environment."""

    dir: Path
    venv: Path


@pytest.fixture
def trial(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Trial:
    """``python -m devtools.dist --no-image`` into a clean directory's ``dist/`` (nothing else of the checkout), and
    the session's fresh venv with that wheel and Airflow 3.3."""
    where = tmp_path / "trial"
    where.mkdir()
    built = subprocess.run([sys.executable, "-m", "devtools.dist", "--no-image", "--out", str(where / "dist")],
                           cwd=REPO, capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert built.returncode == 0, built.stdout[-_TAIL_CHARS:] + built.stderr[-_TAIL_CHARS:]
    return Trial(dir=where, venv=released_venv(where / "dist" / WHEEL, tmp_path_factory))


def users_line(blocks: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Step 5's users line, as the admin's name and the other users' roles."""
    name, _, value = blocks["airflow3-simple-user"].removeprefix("export ").partition("=")
    assert name == USERS_VARIABLE, blocks["airflow3-simple-user"]
    (admin, admin_role), *others = (entry.split(":", 1) for entry in value.split(","))
    assert admin_role == "admin", value
    return admin, dict(others)


def without_checkout(env: dict[str, str]) -> dict[str, str]:
    """``env`` with nothing that could import this checkout's code: its venv off PATH, no PYTHONPATH."""
    kept = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    kept["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    return kept


def airflows_environment(stack: AirflowStack) -> dict[str, str]:
    """The stack's environment before the README's step 2: without the plugin's and the example DAGs' settings."""
    env = stack.environment()
    return without_checkout({k: v for k, v in env.items() if not k.startswith(("COORDINATOR_", "PIPELINE_"))})


def wait_for_etcd(shell: Shell, proc: subprocess.Popen[bytes], url: str) -> None:
    """etcd's /health says true (pip install and start included), or fail with the block's log."""

    def healthy() -> bool:
        assert proc.poll() is None, (
            f"the README's trial etcd exited {proc.returncode}:\n{tail(shell.log('trial-etcd'))}"
        )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # http://127.0.0.1
                return b'"health":"true"' in answer.read()
        except OSError:
            return False

    try:
        wait_for(healthy, 180, f"the README's trial etcd at {url}", interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{tail(shell.log('trial-etcd'))}") from None


def paused(stack: AirflowStack, dag_id: str) -> bool | None:
    """Whether Airflow has ``dag_id`` paused; None when it does not know the DAG."""
    status, body = stack.request("GET", f"/api/v2/dags/{urllib.parse.quote(dag_id)}")
    if status == 404:
        return None
    assert status == 200, body
    return bool(body["is_paused"])


# Its own venv (shared with tests/test_release.py; ~35 s idle, minutes on a loaded machine), Airflow and cascade.
@pytest.mark.timeout(900)
def test_the_readme_install_guide_works_from_the_release_in_order(trial: Trial, tmp_path: Path) -> None:
    """Following the README's steps in order from dist/ on a fresh Airflow 3.3 and a fresh etcd runs the cascade
    02..07 once each, `status` says 07 is up to date, and doctor exits 0. Slow by design: it builds the release,
    installs it with Airflow into a fresh venv and starts that Airflow and etcd as a user would."""
    begin = time.monotonic()
    phases: dict[str, float] = {}
    blocks = readme_blocks()
    admin, users = users_line(blocks)
    assert users.get(WATCHER_USER) == "user", users
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    password_file = tmp_path / "secrets" / "airflow_password"  # its folder is made by step 5's own command
    etcd_port = free_port()
    peer_port = free_port(exclude={etcd_port})
    airflow_port = free_port(exclude={etcd_port, peer_port})
    etcd = f"http://127.0.0.1:{etcd_port}"
    prefix = f"/readme-{os.getpid()}-{int(time.time())}"
    stack = ReadmeAirflow(
        home=tmp_path / "airflow-home",  # empty: no dags/ folder, no passwords, no database
        dags_folder=tmp_path / "airflow-home" / "dags",
        etcd_endpoints=etcd,
        prefix=prefix,
        port=airflow_port,
        username=admin,
        users=users,
        python=str(trial.venv / "bin" / "python"),
    )
    stack.home.mkdir()
    e2e = E2E(stack=stack, etcd_endpoint=etcd, prefix=prefix, work_dir=tmp_path)
    partition = e2e.new_partition()
    placeholders = {
        "127.0.0.1:2379": f"127.0.0.1:{etcd_port}",
        "127.0.0.1:2380": f"127.0.0.1:{peer_port}",
        "http://etcd-1:2379,http://etcd-2:2379": etcd,
        "COORDINATOR_PREFIX=/coordinator": f"COORDINATOR_PREFIX={prefix}",
        "http://airflow:8080": stack.url,
        "/run/secrets/airflow_password": str(password_file),
        "/run/secrets": str(password_file.parent),
        README_DATE: partition[:10],
    }
    env = {
        **airflows_environment(stack),
        # Not a README step: the host is shared and another watcher may hold the default port 9465.
        "COORDINATOR_HTTP": "127.0.0.1:0",
    }
    shell = Shell(trial.dir, env, placeholders, log_dir)
    try:
        # Step 1: the wheel from dist/, into Airflow's environment; what runs from here on is the wheel's code.
        assert (trial.dir / "dist" / WHEEL).is_file(), sorted(p.name for p in (trial.dir / "dist").iterdir())
        shell.run("install", blocks["install"], timeout_s=300)
        where = shell.run(
            "which", 'command -v coordinator; python -c "import coordinator; print(coordinator.__file__)"'
        )
        assert all(line.startswith(str(trial.venv)) for line in where.stdout.split()), where.stdout
        # Step 1's examples archive, unpacked by the page's command: the DAGs and the graph of steps 3 and 6.
        assert sorted(p.name for p in trial.dir.iterdir()) == ["dist"], sorted(p.name for p in trial.dir.iterdir())
        shell.run("examples", blocks["examples"])
        for name in ("dependencies.json", "dags/example_pipeline.py", "charts/examples/platform-values.yaml"):
            assert (trial.dir / name).read_bytes() == (REPO / name).read_bytes(), name

        # Step 2: the trial etcd (its own terminal), then the plugin's environment and its check.
        etcd_proc = shell.start("trial-etcd", blocks["trial-etcd"])
        wait_for_etcd(shell, etcd_proc, etcd)
        check = shell.run("plugin", blocks["plugin"])
        assert "Traceback" not in check.stderr, check.stderr
        phases["release venv, etcd, plugin check"] = time.monotonic() - begin

        # "Then restart the scheduler, the DAG processor and the api-server with this environment".
        exported = {k: v for k, v in shell.env.items() if k.startswith(("COORDINATOR_", "PIPELINE_"))}
        assert exported["COORDINATOR_ETCD_ENDPOINTS"] == etcd and exported["COORDINATOR_PREFIX"] == prefix, exported
        stack.extra_env = {**exported, **AIRFLOW_DEFAULT_SCANS, "TMPDIR": str(tmp_path)}
        started = time.monotonic()
        stack.start(timeout_s=240)
        phases["Airflow start"] = time.monotonic() - started
        shell.env = without_checkout({**shell.env, **stack.environment()})
        assert not stack.dags_folder.exists(), "a fresh AIRFLOW_HOME has no dags folder: step 3 must create it"

        # The issue's silent failure: step 4 before the DAGs are parsed. Airflow's unpause exits 0 saying "No paused
        # DAGs were found"; the README's check after it makes the step exit 1 with what to do.
        early = shell.run("unpause-too-early", blocks["unpause"], check=False)
        assert "No paused DAGs were found" in early.stdout, early.stdout
        assert early.returncode == 1, (early.returncode, early.stdout, early.stderr)
        assert "01..07_pipeline are not all in Airflow and unpaused: see step 3" in early.stderr, early.stderr

        # Step 3: the folder created, the example DAG files copied and parsed now (not at the next scan).
        shell.run("example-dags", blocks["example-dags"], timeout_s=300)
        for name in ["example_pipeline.py", *(f"{dag}.py" for dag in PIPELINES)]:
            assert (stack.dags_folder / name).read_bytes() == (REPO / "dags" / name).read_bytes(), name
        assert {dag: paused(stack, dag) for dag in PIPELINES} == dict.fromkeys(PIPELINES, True), (
            "after step 3 Airflow must know the seven DAGs, paused as it creates them"
        )

        # Step 4: the README's commands unpause them, and its check passes.
        shell.run("unpause", blocks["unpause"])
        assert [dag for dag in PIPELINES if paused(stack, dag) is not False] == []

        # Step 5: the users line Airflow started with, and the watcher's password copied from Airflow's file.
        shell.run("airflow3-simple-user", blocks["airflow3-simple-user"])
        assert shell.env[USERS_VARIABLE] == stack.environment()[USERS_VARIABLE]
        shell.run("watcher-password", blocks["watcher-password"])
        assert password_file.read_text(encoding="utf-8").strip() == stack.user_password(WATCHER_USER)
        assert password_file.stat().st_mode & 0o777 == 0o600

        # Step 6: validate --airflow, as the watcher's user.
        validated = shell.run("watcher-env", blocks["watcher-env"])
        assert f"instance default ({stack.url}): Airflow 3.3.2: 7 of 7 DAGs exist" in validated.stdout, validated
        assert validated.stderr == "", validated.stderr
        assert shell.env["COORDINATOR_AIRFLOW_USERNAME"] == WATCHER_USER

        # Step 7: SQLite's one-call-at-a-time setting, then the watcher leads and adopts the README's graph.
        shell.run("sqlite", blocks["sqlite"])
        assert shell.env["COORDINATOR_MAX_CONCURRENT_ACTIONS"] == "1"
        watcher = shell.start("watch", blocks["watch"])
        digest = load_spec(trial.dir / "dependencies.json").digest

        def adopted() -> bool:
            assert watcher.poll() is None, f"the README's watcher exited:\n{tail(shell.log('watch'))}"
            raw = e2e.read_key(e2e.keys.config_key("graph"))
            return (
                e2e.read_key(e2e.keys.leader) is not None
                and raw is not None
                and (Activation.model_validate_json(raw).digest == digest)
            )

        try:
            wait_for(adopted, 90, "the README's watcher to lead with dependencies.json")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nwatch.log:\n{tail(shell.log('watch'))}") from None

        # Step 8: trigger the root; the cascade runs each dependent once, in order.
        cascade = time.monotonic()
        shell.run("trigger", blocks["trigger"])
        try:
            e2e.wait_for_run_record("07_pipeline", partition, lambda r: r.state is RunState.SUCCESS, timeout_s=300,
                                    what="success of 07_pipeline")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nwatch.log:\n{tail(shell.log('watch'))}") from None
        phases["trigger to 07 success"] = time.monotonic() - cascade
        runs = {dag: e2e.only_run(dag, partition) for dag in PIPELINES}
        for dag, upstreams in UPSTREAMS.items():
            assert runs[dag].run_id == f"coordinator__{partition}", runs[dag]
            assert runs[dag].state == "success", runs[dag]
            assert_started_after(runs[dag], [runs[u] for u in upstreams])
        asked = shell.run("status", blocks["status"])
        assert "07_pipeline is up to date" in asked.stdout, asked.stdout

        # The last step: doctor finds nothing to fix.
        doctor = shell.run("doctor", blocks["doctor"], timeout_s=120, check=False)
        phases["total"] = time.monotonic() - begin
        print(f"\nREADME walkthrough from dist/, cascade {timeline(runs.values(), runs['01_pipeline'].start_date)}; "
              + ", ".join(f"{what} {seconds:.0f} s" for what, seconds in phases.items())
              + f"; doctor:\n{doctor.stdout}")  # fmt: skip
        assert doctor.returncode == 0, f"doctor:\n{doctor.stdout}\n{doctor.stderr}"

        assert set(placeholders) == shell.used, "a placeholder is no longer in the README's blocks"
    finally:
        # The watcher first (it calls Airflow), then Airflow (its plugin writes to etcd), then etcd.
        shell.stop("watch")
        stack.stop()
        shell.stop()
