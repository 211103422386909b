"""The recipes that run the watcher beside managed Airflow (docs/managed/recipes/: Cloud Run for Composer, an ECS
task and service on Fargate for MWAA, the chart's values for Astro) say only what the coordinator understands: every
variable is a real setting and the whole set validates as the watcher's Settings, every command line parses with
the real CLI, the listener is where the platform probes it, and each *_FILE setting points into a mounted path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from coordinator.runtime.settings import Settings, load_instances_file
from tests.support.cli_contract import command_problem, setting_variables

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "managed" / "recipes"
CHART = Path(__file__).resolve().parents[1] / "charts" / "airflow-etcd-coordinator"
#: Variables that are not the coordinator's, each with why it is there.
OTHER_VARIABLES = {"AWS_REGION": "boto3's region for the aws_mwaa auth method's CreateWebLoginToken"}


def check_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Every name is a setting (or a listed other variable), and the values build the watcher's Settings."""
    unknown = set(env) - setting_variables() - set(OTHER_VARIABLES)
    assert not unknown, f"not coordinator settings: {sorted(unknown)}"
    for name in [k for k in os.environ if k.startswith("COORDINATOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def under(path: str, mounts: list[str]) -> bool:
    return any(path.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_the_cloud_run_service_runs_a_real_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Composer's recipe: two instances never scaled to zero with CPU always allocated, `coordinator watch` with real
    flags, real settings, the listener on the port Cloud Run probes, and every file setting inside a mounted secret."""
    service = yaml.safe_load((RECIPES / "cloud-run-watcher.yaml").read_text())
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "2"
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"
    (container,) = template["spec"]["containers"]
    assert command_problem(container["args"]) is None, command_problem(container["args"])
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = check_settings(env, monkeypatch)
    port = container["ports"][0]["containerPort"]
    assert settings.http_address is not None and settings.http_address.port == port
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    files = [v for k, v in env.items() if k.endswith("_FILE") or k in ("COORDINATOR_DEPS",)]
    assert files and all(under(f, mounts) for f in files), (files, mounts)
    assert container["image"].endswith("-google"), "Composer's auth method needs the image with the google extra"


def test_the_ecs_task_and_service_run_a_real_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """MWAA's recipe: a Fargate task running `coordinator watch` as 65532 on a read-only root with /tmp writable, real
    settings (the etcd password injected from Secrets Manager as a setting), a health check that is `coordinator
    probe readyz`, and a service of two tasks that never drops below both during a deployment."""
    task = json.loads((RECIPES / "ecs-task-watcher.json").read_text())
    (container,) = task["containerDefinitions"]
    assert command_problem(container["command"]) is None, command_problem(container["command"])
    assert container["user"] == "65532:65532" and container["readonlyRootFilesystem"] is True
    assert {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False} in container["mountPoints"]
    health = container["healthCheck"]["command"]
    assert health[0] == "CMD" and health[1] == "coordinator" and command_problem(health[2:]) is None
    env = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"]: "from-secrets-manager" for s in container["secrets"]}
    assert set(secrets) == {"COORDINATOR_ETCD_PASSWORD"}
    settings = check_settings({**env, **secrets}, monkeypatch)
    assert settings.http_address is not None
    assert container["portMappings"][0]["containerPort"] == settings.http_address.port
    assert container["image"].endswith("-aws"), "MWAA's auth method needs the image with the aws extra"
    service = json.loads((RECIPES / "ecs-service-watcher.json").read_text())
    assert service["desiredCount"] == 2 and service["taskDefinition"] == task["family"]
    assert service["deploymentConfiguration"]["minimumHealthyPercent"] == 100


def test_the_astro_values_install_the_chart(tmp_path: Path) -> None:
    """Astro's recipe is values for this repository's chart: they pass its schema, render, and the instances file
    they produce loads as the watcher loads it, with the bearer token's file inside a Secret the chart mounts."""
    values: dict[str, Any] = yaml.safe_load((RECIPES / "astro-values.yaml").read_text())
    chart = helm.Chart.load(CHART)
    chart.validate_schema(values)
    manifests = chart.render(values, name="coordinator", namespace="coordinator", is_install=True)
    objects = [d for p, text in manifests.items() if p.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    instances = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-instances"))
    text = instances["data"]["instances.json"]
    token_file = json.loads(text)["astro_prod"]["auth"]["token_file"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    mounts = [m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert under(token_file, mounts), (token_file, mounts)
    # The mounted Secret, stood in by a folder of the test's: the file holds the Deployment API token.
    secret_dir = tmp_path / "astro-prod"
    secret_dir.mkdir()
    (secret_dir / "token").write_text("astro-deployment-token\n")
    path = tmp_path / "instances.json"
    path.write_text(text.replace(str(Path(token_file).parent), str(secret_dir)))
    loaded = load_instances_file(path)
    assert set(loaded) == {"astro_prod"} and loaded["astro_prod"].url.startswith("https://")
