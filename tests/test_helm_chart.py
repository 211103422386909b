"""The Helm chart (charts/airflow-etcd-coordinator), offline: rendered and linted by Helm's own SDK (helm-python-sdk,
Helm v4's Go code through its C ABI: no helm binary, no cluster, no network), every rendered object validated
strictly against Kubernetes' OpenAPI schemas of three releases (kubernetes-validate), the custom resources against
the fields their operators define, the values schema refusing bad values with the path of the bad one, and every
setting and flag the chart gives the watcher checked against the real settings and CLI. The graph a user gives
reaches the ConfigMap unchanged (the real `coordinator validate` judges it), an install missing a value it cannot
run without is refused naming that value, and the install commands of docs/howto/kubernetes.md are rendered as Helm
parses them."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

import coordinator
from coordinator.runtime.settings import ListenAddress, Settings, load_instances_file, parse_listen
from coordinator.runtime.spec_file import load_spec
from devtools import dashboard
from devtools.prometheus import RULES
from tests.support.cli_contract import command_problem, setting_variables

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "airflow-etcd-coordinator"
EXAMPLES = ROOT / "charts" / "examples"
#: The chart as the docs' commands name it: the release's package (tests/test_release.py proves it renders as CHART).
PACKAGED = f"dist/airflow-etcd-coordinator-{coordinator.__version__}.tgz"
#: The image in a team's own registry (no public image exists: the team builds and pushes it).
IMAGE = "registry.example.com/platform/airflow-etcd-coordinator-watcher"
#: What a release cannot run without, and nothing else: the image, etcd, one Airflow and a graph.
REQUIRED: dict[str, Any] = {
    "image": {"repository": IMAGE},
    "etcd": {"endpoints": "http://etcd:2379"},
    "airflow": {"url": "http://airflow-api-server:8080"},
    "deps": {"content": {"version": 1, "dags": {"b": {"upstreams": ["a"]}, "a": {}}}},
}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` deep-merged over a copy of ``base`` (maps merge, anything else replaces), as Helm merges values."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


KUBERNETES_PAGE = ROOT / "docs" / "howto" / "kubernetes.md"
#: Three releases across the supported range (Chart.yaml's kubeVersion is >= 1.30).
KUBERNETES = ["1.30.0", "1.33.0", "1.35.0"]
#: Every switch on: TLS, auth, several instances, monitors, network policy, etcd-operator's cluster.
ALL_ON: dict[str, Any] = {
    "image": {"repository": IMAGE},
    "etcd": {
        "endpoints": "https://coordinator-etcd-client:2379",
        "auth": {"username": "coordinator-watcher", "existingSecret": "coordinator-etcd"},
        "tls": {
            "enabled": True,
            "existingSecret": "coordinator-etcd-tls",
            "caKey": "ca.crt",
            "certKey": "tls.crt",
            "keyKey": "tls.key",
        },
    },
    "airflow": {
        "url": "https://airflow.example.com",
        "username": "coordinator",
        "api": "v2",
        "existingSecret": "coordinator-airflow",
        "instances": {
            "team_a": {
                "url": "https://airflow-a.example.com",
                "username": "coordinator",
                "password_file": "/run/secrets/airflow/airflow-a/password",
                "max_calls": 4,
            },
            "astro": {
                "url": "https://clxyz.astronomer.run/d8f2k1",
                "auth": {"method": "bearer", "token_file": "/run/secrets/airflow/astro/token"},
            },
        },
        "instanceSecrets": ["airflow-a", "astro"],
    },
    "deps": {"content": {"version": 1, "dags": {"b": {"upstreams": ["a"]}, "a": {}}}},
    "watcher": {
        "retention": "90d",
        "triggerBudget": 200,
        "extraArgs": ["--leader-ttl", "15"],
        "extraEnv": [{"name": "COORDINATOR_ASSET_INTERVAL_S", "value": "5"}],
    },
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "namespace": "monitoring", "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Airflow"}},
    },
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "egress": [
            {
                "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "etcd"}}}],
                "ports": [{"port": 2379, "protocol": "TCP"}],
            }
        ],
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "watcher"}},
        }
    ],
    "etcdCluster": {
        "enabled": True,
        "tlsProvider": "cert-manager",
        "certManager": {"issuerKind": "ClusterIssuer", "issuerName": "internal-ca"},
        "storage": {"volumeSizeRequest": "16Gi", "storageClassName": "fast"},
    },
}
CASES = {"minimal": REQUIRED, "all-on": ALL_ON}

#: The custom resources' own schemas, written from the fields their operators define (etcd-operator's CRD
#: operator.etcd.io_etcdclusters.yaml; the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule),
#: strict on the fields this chart renders: a misspelt field fails here as the API server would refuse it.
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$"}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_SELECTOR = {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
             "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}}  # fmt: skip
#: The operator's RelabelConfig (a target relabeling; its actions as the CRD enumerates them).
_RELABEL = {"type": "object", "additionalProperties": False,
            "properties": {"sourceLabels": {"type": "array", "items": {"type": "string"}},
                           "separator": {"type": "string"}, "targetLabel": {"type": "string"},
                           "regex": {"type": "string"}, "modulus": {"type": "integer"},
                           "replacement": {"type": "string"},
                           "action": {"enum": ["replace", "keep", "drop", "hashmod", "labelmap", "labeldrop",
                                               "labelkeep", "lowercase", "uppercase", "keepequal",
                                               "dropequal"]}}}  # fmt: skip
_ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"],
             "properties": {"port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"},
                            "scrapeTimeout": {"type": "string"},
                            "relabelings": {"type": "array", "items": _RELABEL}}}  # fmt: skip


def _custom(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _METADATA,
                           "spec": spec}}  # fmt: skip


CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("operator.etcd.io/v1alpha1", "EtcdCluster"): _custom({
        "type": "object", "required": ["size", "version"], "additionalProperties": False,
        "properties": {
            "size": {"type": "integer", "minimum": 1},
            "version": {"type": "string"},
            "storageSpec": {"type": "object", "required": ["volumeSizeRequest"], "additionalProperties": False,
                            "properties": {"volumeSizeRequest": _QUANTITY, "volumeSizeLimit": _QUANTITY,
                                           "storageClassName": {"type": "string"}, "accessModes": {"type": "string"},
                                           "pvcName": {"type": "string"}}},
            "tls": {"type": "object", "additionalProperties": False, "properties": {
                "provider": {"enum": ["auto", "cert-manager"]},
                "providerCfg": {"type": "object", "additionalProperties": False, "properties": {
                    "autoCfg": {"type": "object"},
                    "certManagerCfg": {"type": "object", "required": ["commonName"], "additionalProperties": False,
                                       "properties": {"commonName": {"type": "string"},
                                                      "issuerKind": {"enum": ["Issuer", "ClusterIssuer"]},
                                                      "issuerName": {"type": "string"},
                                                      "caBundle": {"type": "string"},
                                                      "dnsNames": {"type": "array"},
                                                      "duration": {"type": "string"}}}}}}},
        },
    }),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _custom({
        "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
        "properties": {"selector": _SELECTOR, "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
    }),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _custom({
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                           "rules": {"type": "array", "minItems": 1, "items": {
                               "type": "object", "required": ["alert", "expr"], "additionalProperties": False,
                               "properties": {"alert": {"type": "string"}, "expr": {"type": "string"},
                                              "for": {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h)$"},
                                              "labels": {"type": "object",
                                                         "additionalProperties": {"type": "string"}},
                                              "annotations": {"type": "object",
                                                              "additionalProperties": {"type": "string"}}}}}}}}},
    }),
    ("monitoring.coreos.com/v1", "PodMonitor"): _custom({
        "type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False,
        "properties": {"selector": _SELECTOR,
                       "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
    }),
}  # fmt: skip


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (as `helm template` would, release "coord" in "airflow")."""
    manifests = chart.render(values, name="coord", namespace="airflow", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def validate_strictly(objects: list[dict[str, Any]], version: str) -> None:
    """Each object against Kubernetes ``version``'s schema in strict mode (unknown fields refused), or a custom
    resource against its operator's fields (CUSTOM_SCHEMAS)."""
    for obj in objects:
        custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if custom is not None:
            jsonschema.validate(obj, custom)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["watcher"]
    containers: dict[str, Any] = spec["containers"][0]
    return containers


@pytest.mark.parametrize("version", KUBERNETES)
@pytest.mark.parametrize("case", list(CASES))
def test_every_rendered_object_is_valid_kubernetes(chart: helm.Chart, case: str, version: str) -> None:
    """With only the required values and with every switch on, each rendered object validates strictly (unknown fields
    refused) against that Kubernetes release's schema, or against its operator's fields for a custom resource."""
    objects = render(chart, CASES[case])
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    if case == "all-on":
        expected += ["ConfigMap", "ConfigMap", "EtcdCluster", "NetworkPolicy", "PodMonitor"]
        expected += ["PrometheusRule", "ServiceMonitor"]
    assert kinds == sorted(expected)
    validate_strictly(objects, version)


@pytest.mark.parametrize("version", KUBERNETES)
def test_helm_lint_finds_nothing(version: str) -> None:
    """`helm lint --strict` (Helm's own linter, run for each Kubernetes release) reports no error or warning, with
    only the required values and with every switch on."""
    for values in CASES.values():
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_the_watcher_runs_hardened_with_two_replicas_and_both_probes(chart: helm.Chart) -> None:
    """Defaults: 2 replicas, a rollout that never removes a ready pod first, a PDB keeping one, non-root 65532 with
    every capability dropped and a read-only root (/tmp an emptyDir), no service account token, /healthz and
    /readyz probes on the listener the watcher binds on 0.0.0.0, and the image tag the package's version."""
    objects = render(chart, REQUIRED)
    deployment = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert by_kind(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert by_kind(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    watcher = container(objects)
    assert watcher["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                          "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert {"name": "tmp", "mountPath": "/tmp"} in watcher["volumeMounts"]
    assert watcher["image"] == f"{IMAGE}:{coordinator.__version__}"
    env = {e["name"]: e.get("value") for e in watcher["env"]}
    assert env["COORDINATOR_HTTP"] == "0.0.0.0:9465"
    assert watcher["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert watcher["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}


@pytest.mark.parametrize("port", [9465, 9500], ids=["default-port", "moved-port"])
def test_the_probes_hit_the_port_the_watcher_binds_on_every_interface(chart: helm.Chart, port: int) -> None:
    """Liveness and startup on /healthz, readiness on /readyz, each on the container port that COORDINATOR_HTTP makes
    the listener bind on 0.0.0.0, also when metrics.port moves it; the metrics Service targets that port."""
    objects = render(chart, merged(REQUIRED, {"metrics": {"port": port}}))
    watcher = container(objects)
    env = {e["name"]: e.get("value") for e in watcher["env"]}
    assert parse_listen(env["COORDINATOR_HTTP"]) == ListenAddress("0.0.0.0", port)
    ports = {p["name"]: p["containerPort"] for p in watcher["ports"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = watcher[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, port)
    (service_port,) = by_kind(objects, "Service")["spec"]["ports"]
    assert service_port["port"] == port and ports[service_port["targetPort"]] == port


def test_credentials_reach_the_pod_only_as_files_from_existing_secrets(chart: helm.Chart) -> None:
    """Every switch on: passwords and keys are *_FILE settings pointing into read-only mounts of the named Secrets
    (mode 0440, readable by the pod's group only); no env value carries a secret, no Secret is rendered."""
    objects = render(chart, ALL_ON)
    assert not [o for o in objects if o["kind"] == "Secret"]
    watcher = container(objects)
    env = {e["name"]: e.get("value", "") for e in watcher["env"]}
    assert env["COORDINATOR_ETCD_PASSWORD_FILE"] == "/run/secrets/etcd-auth/etcd-password"
    assert env["COORDINATOR_AIRFLOW_PASSWORD_FILE"] == "/run/secrets/airflow-default/airflow-password"
    assert env["COORDINATOR_ETCD_KEY_FILE"] == "/run/secrets/etcd-tls/tls.key"
    assert not [k for k in env if "PASSWORD" in k and not k.endswith("_FILE")]
    volumes = {v["name"]: v for v in by_kind(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    secrets = {v["secret"]["secretName"]: v["secret"]["defaultMode"] for v in volumes.values() if "secret" in v}
    assert secrets == {name: 0o440 for name in ("coordinator-etcd", "coordinator-etcd-tls", "coordinator-airflow",
                                                  "airflow-a", "astro")}  # fmt: skip
    mounts = {m["mountPath"]: m for m in watcher["volumeMounts"]}
    assert all(m.get("readOnly") for path, m in mounts.items() if path.startswith("/run/secrets"))
    instances = json.loads(by_kind([o for o in objects if o["metadata"]["name"].endswith("-instances")],
                                   "ConfigMap")["data"]["instances.json"])  # fmt: skip
    assert instances["team_a"]["password_file"] == "/run/secrets/airflow/airflow-a/password"
    assert instances["team_a"]["max_calls"] == 4  # the watcher's bound of calls at once to that Airflow


@pytest.mark.parametrize("case", list(CASES))
def test_every_setting_and_flag_the_chart_gives_is_real(
    chart: helm.Chart, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each COORDINATOR_* variable the chart sets is a real setting and the whole set validates as the watcher's
    Settings; the container's arguments parse as a real `coordinator watch` command line."""
    watcher = container(render(chart, CASES[case]))
    assert watcher["args"][0] == "watch"
    assert command_problem(watcher["args"]) is None, command_problem(watcher["args"])
    env = {e["name"]: e.get("value", "pod-name") for e in watcher["env"]}
    unknown = set(env) - setting_variables()
    assert not unknown, f"not coordinator settings: {sorted(unknown)}"
    for name in [k for k in os.environ if k.startswith("COORDINATOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.http == "0.0.0.0:9465" and str(settings.deps) == "/etc/coordinator/deps/dependencies.json"


@pytest.mark.parametrize(
    ("values", "path"),
    [
        pytest.param({"replicaCount": "2"}, "replicaCount", id="string-replica-count"),
        pytest.param({"replicaCount": 0}, "replicaCount", id="zero-replicas"),
        pytest.param({"replicas": 3}, "replicas", id="unknown-top-level-key"),
        pytest.param({"airflow": {"password": "hunter2"}}, "password", id="inline-airflow-password"),
        pytest.param({"etcd": {"auth": {"password": "hunter2"}}}, "password", id="inline-etcd-password"),
        pytest.param(
            {"airflow": {"instances": {"a": {"url": "https://a", "password": "x"}}}},
            "password",
            id="inline-instance-password",
        ),
        pytest.param({"etcdCluster": {"version": "v3.5.1"}}, "etcdCluster.version", id="etcd-below-the-floor"),
        pytest.param({"watcher": {"retention": "forever"}}, "watcher.retention", id="bad-retention"),
        pytest.param(
            {"metrics": {"prometheusRule": {"namespace": "Monitoring"}}}, "namespace", id="rule-namespace-not-dns"
        ),
    ],
)
def test_the_values_schema_refuses_bad_values_naming_the_path(
    chart: helm.Chart, values: dict[str, Any], path: str
) -> None:
    """A string or zero replica count, an unknown key, a password given inline (anywhere), an etcd below 3.5.3 or a
    retention that is no duration fails Helm's values validation with an error naming the bad value's path."""
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(merged(REQUIRED, values))
    assert path.split(".")[-1] in str(refused.value), str(refused.value)
    assert str(refused.value).count("- at '") == 1, "only the bad value is refused: " + str(refused.value)


def test_the_prometheusrule_is_the_shipped_rules_file_with_the_selectors_labels(chart: helm.Chart) -> None:
    """With metrics.prometheusRule on, the chart renders one PrometheusRule whose spec is the shipped rules file as it
    is ({{ $labels }} templates untouched), in the namespace and with the labels a Prometheus's ruleSelector needs;
    without a namespace it goes into the release's."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    objects = render(chart, ALL_ON)
    rule = by_kind(objects, "PrometheusRule")
    assert rule["spec"] == rules
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "coord"
    assert "{{ $labels.alarm }}" in json.dumps(rule["spec"])
    default_namespace = render(chart, merged(REQUIRED, {"metrics": {"prometheusRule": {"enabled": True}}}))
    assert by_kind(default_namespace, "PrometheusRule")["metadata"]["namespace"] == "airflow"
    assert not [o for o in render(chart, REQUIRED) if o["kind"] == "PrometheusRule"], "off by default"


def test_the_dashboard_configmap_holds_the_shipped_dashboard_under_the_sidecars_label(chart: helm.Chart) -> None:
    """With metrics.grafanaDashboard on, one ConfigMap carries files/grafana-dashboard.json unchanged under the label
    Grafana's dashboard sidecar selects (grafana_dashboard: "1") and the given annotations; off by default."""
    objects = render(chart, ALL_ON)
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert json.loads(config["data"]["airflow-etcd-coordinator.json"]) == json.loads(dashboard.DASHBOARD.read_text())
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Airflow"}
    assert config["metadata"]["namespace"] == "airflow"
    off = render(chart, REQUIRED)
    assert not [o for o in off if o["metadata"]["name"].endswith("-dashboard")], "off by default"


def test_the_required_and_all_on_values_pass_the_values_schema(chart: helm.Chart) -> None:
    """The required values alone and the all-on values are valid against values.schema.json."""
    chart.validate_schema(REQUIRED)
    chart.validate_schema(ALL_ON)


def test_a_changed_dependencies_file_rolls_the_pods(chart: helm.Chart) -> None:
    """The pod template's checksum annotation changes when deps.content changes (a rollout picks up the graph), and
    stays the same when nothing changed."""

    def checksum(values: dict[str, Any]) -> str:
        pod = by_kind(render(chart, values), "Deployment")["spec"]["template"]["metadata"]
        value: str = pod["annotations"]["checksum/deps"]
        return value

    changed = merged(REQUIRED, {"deps": {"content": {"version": 1, "dags": {"x": {}}}}})
    assert checksum(REQUIRED) == checksum(REQUIRED) != checksum(changed)


def examples() -> Iterator[Path]:
    """The example manifests (the example values files, *-values.yaml, are the chart's input: tested below)."""
    yield from sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.endswith("-values.yaml"))


@pytest.mark.parametrize("example", list(examples()), ids=lambda p: p.name)
def test_the_examples_are_valid_kubernetes(example: Path) -> None:
    """Each manifest in charts/examples validates strictly for every Kubernetes release above (custom resources
    against their operator's fields), and runs an etcd at or above 3.5.3."""
    for obj in [doc for doc in yaml.safe_load_all(example.read_text()) if doc]:
        custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        for version in KUBERNETES:
            if custom is not None:
                jsonschema.validate(obj, custom)
            else:
                kubernetes_validate.validate(obj, version, strict=True)
    for tag in __import__("re").findall(r"etcd:v(\d+)\.(\d+)\.(\d+)", example.read_text()):
        assert tuple(map(int, tag)) >= (3, 5, 3), example


#: The OpenLineage receiver switched on, with its own etcd user, tokens, monitors and network policy.
LINEAGE_ON: dict[str, Any] = {
    **ALL_ON,
    "lineage": {
        "enabled": True,
        "instances": ["analytics"],
        "etcdAuth": {"username": "coordinator-lineage-analytics", "existingSecret": "coordinator-lineage-etcd"},
        "tokens": {"content": {"tokens": [{"name": "dbt", "sha256": "a" * 64, "namespaces": ["dbt_prod"]}]}},
        "podMonitor": {"enabled": True},
    },
}


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_receiver_renders_valid_objects_apart_from_the_watcher(chart: helm.Chart, version: str) -> None:
    """With lineage.enabled each object validates strictly; the receiver's Deployment runs a real `coordinator lineage
    serve` command line with real settings, and neither Deployment's selector picks the other's pods."""
    objects = render(chart, LINEAGE_ON)
    validate_strictly(objects, version)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        picked = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert picked == [deployment["metadata"]["name"]], (deployment["metadata"]["name"], picked)
    receiver = next(d for d in deployments if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "lineage")
    main = receiver["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in main["env"]}
    # --tokens is required: the chart gives it as COORDINATOR_LINEAGE_TOKENS_FILE, so the parse sees the pod's env.
    assert main["args"][:2] == ["lineage", "serve"] and command_problem(main["args"], env) is None, main["args"]
    assert {e["name"] for e in main["env"]} <= setting_variables()
    assert env["COORDINATOR_LINEAGE_INSTANCES"] == "analytics" and env["COORDINATOR_LINEAGE_LISTEN"] == "0.0.0.0:9467"


def test_the_receivers_podmonitor_names_the_job_its_alert_rules_select(chart: helm.Chart) -> None:
    """The receiver's PodMonitor relabels its scrape job to the one name every rule of the shipped lineage group
    selects, and the watchers' etcd rules leave that job out: the receiver's alerts fire on its own series only."""
    monitor = next(o for o in render(chart, LINEAGE_ON)
                   if o["kind"] == "PodMonitor" and o["metadata"]["name"].endswith("-lineage"))  # fmt: skip
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (relabel,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    job = relabel["replacement"]
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]}
    lineage = groups["airflow-etcd-coordinator-lineage"]
    assert lineage and all(f'job="{job}"' in rule["expr"] for rule in lineage)
    watchers_etcd = [r for r in groups["airflow-etcd-coordinator"] if "coordinator_etcd_" in r["expr"]]
    assert watchers_etcd and all(f'job!="{job}"' in rule["expr"] for rule in watchers_etcd)


def deps_text(objects: list[dict[str, Any]]) -> str:
    """The dependencies.json the watcher's pods read: the deps ConfigMap's data, as the API server stores it."""
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-deps")]
    text: str = config["data"]["dependencies.json"]
    return text


def validate_graph(text: str, tmp_path: Path) -> str:
    """Run the real `coordinator validate` on ``text`` as a user would; its summary line, or the test fails."""
    path = tmp_path / "dependencies.json"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("flag", ["--set-json", "--set-file"])
def test_the_repositorys_graph_reaches_the_pods_unchanged(
    chart: helm.Chart, flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository's own dependencies.json (the shorthand) given as `--set-json deps.content="$(cat ...)"` or as
    `--set-file deps.content=dependencies.json` (parsed by Helm's own parsers) renders a ConfigMap holding that graph
    and nothing else (the text byte for byte with --set-file), which the real `coordinator validate` accepts."""
    monkeypatch.chdir(ROOT)
    source = (ROOT / "dependencies.json").read_text(encoding="utf-8")
    if flag == "--set-json":
        given = helm.parse_set_json("deps.content=" + source)
    else:
        given = helm.parse_set_file("deps.content=dependencies.json")
    values = merged({k: v for k, v in REQUIRED.items() if k != "deps"}, given)
    text = deps_text(render(chart, values))
    assert json.loads(text) == json.loads(source)
    if flag == "--set-file":
        assert text == source
    assert "valid — 7 DAGs, 9 edges, 1 root (01_pipeline)" in validate_graph(text, tmp_path)


def test_an_empty_install_is_refused_naming_each_value_it_cannot_run_without(chart: helm.Chart) -> None:
    """`helm install` with no values fails Helm's values validation, one error naming each missing value: the image's
    repository, etcd's endpoints, the Airflow (url, instances or an instances ConfigMap) and the graph."""
    with pytest.raises(helm.HelmValuesError) as refused:
        render(chart, {})
    message = str(refused.value)
    paths = ["/image/repository", "/etcd/endpoints", "/airflow/url", "/airflow/instances", "/deps/existingConfigMap"]
    for path in paths:
        assert f"at '{path}'" in message, message
    assert "at '/deps': missing property 'content'" in message, message


def test_without_schema_validation_the_templates_refuse_an_empty_install(tmp_path: Path) -> None:
    """Rendered with no schema at all (as `--skip-schema-validation` installs), the chart still refuses no values, with
    one message naming every missing value and how to give the graph."""
    copy_of_chart = tmp_path / "chart"
    shutil.copytree(CHART, copy_of_chart)
    (copy_of_chart / "values.schema.json").unlink()
    with pytest.raises(helm.HelmRenderError) as refused:
        render(helm.Chart.load(copy_of_chart), {})
    message = str(refused.value)
    assert "the release cannot run without: image.repository" in message, message
    for value in ("etcd.endpoints", "airflow.url or airflow.instances", "--set-file deps.content=dependencies.json"):
        assert value in message, message


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({"content": "[1, 2]"}, "deps.content: the text given is not a JSON object", id="not-an-object"),
        pytest.param({"content": '{"a": '}, "coordinator validate dependencies.json", id="truncated-file"),
        pytest.param({"existingConfigMap": "mine"}, "not both", id="content-and-existing-configmap"),
    ],
)
def test_a_graph_the_chart_cannot_pass_on_is_refused_at_install(
    chart: helm.Chart, deps: dict[str, Any], expected: str
) -> None:
    """A file whose text is no JSON object, or a graph given both as content and as an existing ConfigMap, fails the
    render with a message naming deps and what to do, instead of pods that refuse to start."""
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, merged(REQUIRED, {"deps": deps}))
    assert expected in str(refused.value), str(refused.value)


TLS_ON = {"enabled": True, "existingSecret": "etcd-tls", "caKey": "ca.crt"}


@pytest.mark.parametrize(
    ("etcd", "expected"),
    [
        pytest.param({"endpoints": "https://etcd-0:2379,http://etcd-1:2379", "tls": TLS_ON},
                     "etcd.tls.enabled=true but etcd.endpoints has http://etcd-1:2379 without https://: use https:// "
                     "for every endpoint, or etcd.tls.enabled=false for an etcd without TLS", id="http-with-tls"),
        pytest.param({"endpoints": "https://etcd:2379", "tls": {**TLS_ON, "existingSecret": ""}},
                     "etcd.tls.enabled=true needs etcd.tls.existingSecret", id="tls-without-secret"),
        pytest.param({"endpoints": "https://etcd:2379", "tls": {**TLS_ON, "certKey": "tls.crt"}},
                     "etcd.tls.certKey and etcd.tls.keyKey go together", id="certificate-without-key"),
    ],
)  # fmt: skip
def test_etcd_tls_that_disagrees_with_the_endpoints_is_refused_at_install(
    chart: helm.Chart, etcd: dict[str, Any], expected: str
) -> None:
    """etcd.tls at odds with the endpoints, without its Secret, or half a client pair fails the render, naming it."""
    with pytest.raises(helm.HelmRenderError) as refused:
        render(chart, merged(REQUIRED, {"etcd": etcd}))
    assert expected in str(refused.value), str(refused.value)


def test_a_graph_may_name_a_dag_error(chart: helm.Chart) -> None:
    """A file whose one DAG is called "Error" is not mistaken for Helm's fromJson failure: it renders as given."""
    text = '{"Error": "extract"}\n'
    assert deps_text(render(chart, merged(REQUIRED, {"deps": {"content": text}}))) == text


def test_an_existing_configmap_is_mounted_and_none_is_rendered(chart: helm.Chart) -> None:
    """deps.existingConfigMap alone gives the graph: no deps ConfigMap is rendered, the pods mount that one."""
    values = {k: v for k, v in REQUIRED.items() if k != "deps"} | {"deps": {"existingConfigMap": "team-graph"}}
    objects = render(chart, values)
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-deps")]
    volumes = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "deps", "configMap": {"name": "team-graph"}} in volumes


def values_of(command: str, tmp_path: Path, base: Path = ROOT) -> dict[str, Any]:
    """The values a `helm upgrade --install` command line gives, parsed by Helm's own parsers and merged in Helm's
    order (-f files, then --set-json, --set, --set-file); `"$(cat FILE)"` is substituted as the shell would. Files
    are read from ``base`` (`--set-file` from the working directory, as Helm reads it); the chart must be the
    release's package, :data:`PACKAGED`."""

    def cat(match: re.Match[str]) -> str:
        return shlex.quote((base / match.group(1)).read_text(encoding="utf-8"))

    words = shlex.split(re.sub(r'"\$\(cat ([^)]+)\)"', cat, command))
    assert words[:3] == ["helm", "upgrade", "--install"], words
    positional: list[str] = []
    given: dict[str, list[dict[str, Any]]] = {"-f": [], "--set-json": [], "--set": [], "--set-file": []}
    rest = iter(words[3:])
    for word in rest:
        if word in ("-n", "--namespace"):
            next(rest)
        elif word in ("-f", "--values"):
            given["-f"].append(yaml.safe_load((base / next(rest)).read_text()))
        elif word == "--set-json":
            given[word].append(helm.parse_set_json(next(rest)))
        elif word == "--set":
            given[word].append(helm.parse_set_string(next(rest)))
        elif word == "--set-file":
            given[word].append(helm.parse_set_file(next(rest)))
        elif word.startswith("-"):
            pytest.fail(f"the test does not know the flag {word}: teach values_of() how Helm reads it")
        else:
            positional.append(word)
    assert positional == ["coordinator", PACKAGED], positional
    values: dict[str, Any] = {}
    for parts in given.values():
        for part in parts:
            values = merged(values, part)
    return values


def documented_installs() -> list[str]:
    """Every `helm upgrade --install` command of docs/howto/kubernetes.md, continuation lines joined."""
    text = KUBERNETES_PAGE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip().startswith("helm upgrade --install")]


def documented_unpacking(page: Path) -> str:
    """The one command of ``page`` that unpacks the release's examples archive (`tar -xzf dist/...`)."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    (line,) = [line.strip() for block in blocks for line in block.splitlines() if line.startswith("tar -xzf dist/")]
    return line


def test_the_documented_install_commands_are_the_ones_tested() -> None:
    """docs/howto/kubernetes.md installs the release's packaged chart from dist/ in all three commands, with both
    forms of giving the graph and the platform team's values file from the examples archive, which it unpacks with
    the install guide's own command."""
    commands = documented_installs()
    assert len(commands) == 3, commands
    assert all(c.split()[4] == PACKAGED for c in commands), commands
    howto = ROOT / "docs" / "howto" / "existing-airflow.md"
    unpack = f"tar -xzf dist/airflow-etcd-coordinator-examples-{coordinator.__version__}.tar.gz --strip-components=1"
    assert documented_unpacking(KUBERNETES_PAGE) == documented_unpacking(howto) == unpack
    assert any("--set-file deps.content=dependencies.json" in c for c in commands), commands
    assert any('--set-json deps.content="$(cat dependencies.json)"' in c for c in commands), commands
    assert any("-f charts/examples/platform-values.yaml" in c for c in commands), commands


def install_id(command: str) -> str:
    """A test id naming how the command gives its values."""
    return "values-file" if " -f " in command else "set-json" if "--set-json" in command else "set-file"


@pytest.mark.parametrize("command", documented_installs(), ids=install_id)
def test_each_documented_install_renders_valid_objects_and_a_valid_graph(
    chart: helm.Chart, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `helm upgrade --install` of docs/howto/kubernetes.md, run from the repository's root (the chart folder
    standing in for the package it becomes, the examples at the same paths as in their archive), passes the values
    schema, renders objects valid for every Kubernetes release above, and a graph the real `coordinator validate`
    accepts, exactly the one the command gave."""
    monkeypatch.chdir(ROOT)
    values = values_of(command, tmp_path)
    objects = render(chart, values)
    for version in KUBERNETES:
        validate_strictly(objects, version)
    text = deps_text(objects)
    given = values["deps"]["content"]
    assert text == given if isinstance(given, str) else json.loads(text) == given
    validate_graph(text, tmp_path)


def platform_values() -> dict[str, Any]:
    """charts/examples/platform-values.yaml with its graph, as `-f ... --set-file deps.content=...` gives them."""
    values: dict[str, Any] = yaml.safe_load((EXAMPLES / "platform-values.yaml").read_text())
    return merged(values, helm.parse_set_file(f"deps.content={EXAMPLES / 'platform-dependencies.json'}"))


@pytest.mark.parametrize("version", KUBERNETES)
def test_the_platform_example_renders_valid_objects_and_lints_clean(chart: helm.Chart, version: str) -> None:
    """The platform team's example values (three Airflows, TLS etcd with client certificates, auth, a PodMonitor and
    the alert rules, a NetworkPolicy) render objects that each validate strictly, and `helm lint --strict` finds
    nothing."""
    objects = render(chart, platform_values())
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
                            "PodMonitor", "PrometheusRule", "ServiceAccount"]), kinds  # fmt: skip
    validate_strictly(objects, version)
    report = helm.lint(CHART, platform_values(), strict=True, kube_version=f"v{version}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_the_platform_example_runs_a_watcher_that_reaches_all_three_airflows(
    chart: helm.Chart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the platform example every instance the graph names is in the instances file, which loads as the watcher
    loads it with each credential a file inside a mounted Secret; etcd is reached over TLS with the client certificate
    and key from their Secret, and the settings validate as the watcher's."""
    objects = render(chart, platform_values())
    graph = load_spec(EXAMPLES / "platform-dependencies.json")
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-instances")]
    text = config["data"]["instances.json"]
    named = json.loads(text)
    assert {node.instance for node in graph.dags} == set(named) == {"ingest", "analytics", "finance"}
    watcher = container(objects)
    mounts = [m["mountPath"] for m in watcher["volumeMounts"]]
    # The mounted Secrets, stood in by folders of the test's holding the files the instances file names.
    for entry in named.values():
        file = Path(entry.get("password_file") or entry["auth"]["token_file"])
        assert any(file.parent == Path(mount) for mount in mounts), (file, mounts)
        stand_in = tmp_path / file.parent.name / file.name
        stand_in.parent.mkdir(exist_ok=True)
        stand_in.write_text("secret\n")
    local = tmp_path / "instances.json"
    local.write_text(text.replace("/run/secrets/airflow/", f"{tmp_path}/"))
    loaded = load_instances_file(local)
    assert {name: str(item.url).rstrip("/") for name, item in loaded.items()} == {
        name: entry["url"] for name, entry in named.items()
    }
    env = {e["name"]: e.get("value", "pod-name") for e in watcher["env"]}
    assert env["COORDINATOR_ETCD_CERT_FILE"] == "/run/secrets/etcd-tls/tls.crt"
    assert env["COORDINATOR_ETCD_KEY_FILE"] == "/run/secrets/etcd-tls/tls.key"
    assert all(url.startswith("https://") for url in env["COORDINATOR_ETCD_ENDPOINTS"].split(","))
    assert watcher["image"] == f"{IMAGE}:{coordinator.__version__}"
    for name in [k for k in os.environ if k.startswith("COORDINATOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().etcd_username == "coordinator-watcher"
