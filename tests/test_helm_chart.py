"""The Helm chart (charts/airflow-etcd-coordinator), offline: rendered and linted by Helm's own SDK (helm-python-sdk,
Helm v4's Go code through its C ABI: no helm binary, no cluster, no network), every rendered object validated
strictly against Kubernetes' OpenAPI schemas of three releases (kubernetes-validate), the custom resources against
the fields their operators define, the values schema refusing bad values with the path of the bad one, and every
setting and flag the chart gives the watcher checked against the real settings and CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

import coordinator
from coordinator.settings import ListenAddress, Settings, parse_listen
from tests.support.cli_contract import command_problem, setting_variables

CHART = Path(__file__).resolve().parents[1] / "charts" / "airflow-etcd-coordinator"
#: Three releases across the supported range (Chart.yaml's kubeVersion is >= 1.30).
KUBERNETES = ["1.30.0", "1.33.0", "1.35.0"]
#: Every switch on: TLS, auth, several instances, monitors, network policy, etcd-operator's cluster.
ALL_ON: dict[str, Any] = {
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
    "metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
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
CASES = {"defaults": {}, "all-on": ALL_ON}

#: The custom resources' own schemas, written from the fields their operators define (etcd-operator's CRD
#: operator.etcd.io_etcdclusters.yaml; the Prometheus Operator's ServiceMonitor and PodMonitor), strict on the
#: fields this chart renders: a misspelt field fails here as the API server would refuse it.
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$"}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_SELECTOR = {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
             "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}}  # fmt: skip
_ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"],
             "properties": {"port": {"type": "string"}, "path": {"type": "string"}, "interval": {"type": "string"},
                            "scrapeTimeout": {"type": "string"}}}  # fmt: skip


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
    """With the default values and with every switch on, each rendered object validates strictly (unknown fields
    refused) against that Kubernetes release's schema, or against its operator's fields for a custom resource."""
    objects = render(chart, CASES[case])
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    if case == "all-on":
        expected += ["ConfigMap", "EtcdCluster", "NetworkPolicy", "PodMonitor", "ServiceMonitor"]
    assert kinds == sorted(expected)
    for obj in objects:
        custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if custom is not None:
            jsonschema.validate(obj, custom)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES)
def test_helm_lint_finds_nothing(version: str) -> None:
    """`helm lint --strict` (Helm's own linter, run for each Kubernetes release) reports no error or warning, with
    the default values and with every switch on."""
    for values in CASES.values():
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


def test_the_watcher_runs_hardened_with_two_replicas_and_both_probes(chart: helm.Chart) -> None:
    """Defaults: 2 replicas, a rollout that never removes a ready pod first, a PDB keeping one, non-root 65532 with
    every capability dropped and a read-only root (/tmp an emptyDir), no service account token, /healthz and
    /readyz probes on the listener the watcher binds on 0.0.0.0, and the image tag the package's version."""
    objects = render(chart, {})
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
    assert watcher["image"] == f"airflow-etcd-coordinator-watcher:{coordinator.__version__}"
    env = {e["name"]: e.get("value") for e in watcher["env"]}
    assert env["COORDINATOR_HTTP"] == "0.0.0.0:9465"
    assert watcher["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert watcher["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}


@pytest.mark.parametrize("port", [9465, 9500], ids=["default-port", "moved-port"])
def test_the_probes_hit_the_port_the_watcher_binds_on_every_interface(chart: helm.Chart, port: int) -> None:
    """Liveness and startup on /healthz, readiness on /readyz, each on the container port that COORDINATOR_HTTP makes
    the listener bind on 0.0.0.0, also when metrics.port moves it; the metrics Service targets that port."""
    objects = render(chart, {"metrics": {"port": port}})
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
    ],
)
def test_the_values_schema_refuses_bad_values_naming_the_path(
    chart: helm.Chart, values: dict[str, Any], path: str
) -> None:
    """A string or zero replica count, an unknown key, a password given inline (anywhere), an etcd below 3.5.3 or a
    retention that is no duration fails Helm's values validation with an error naming the bad value's path."""
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert path.split(".")[-1] in str(refused.value), str(refused.value)


def test_the_defaults_pass_the_values_schema(chart: helm.Chart) -> None:
    """values.yaml itself and the all-on values are valid against values.schema.json."""
    chart.validate_schema({})
    chart.validate_schema(ALL_ON)


def test_a_changed_dependencies_file_rolls_the_pods(chart: helm.Chart) -> None:
    """The pod template's checksum annotation changes when deps.content changes (a rollout picks up the graph), and
    stays the same when nothing changed."""

    def checksum(values: dict[str, Any]) -> str:
        pod = by_kind(render(chart, values), "Deployment")["spec"]["template"]["metadata"]
        value: str = pod["annotations"]["checksum/deps"]
        return value

    changed = {"deps": {"content": {"version": 1, "dags": {"x": {}}}}}
    assert checksum({}) == checksum({}) != checksum(changed)


def examples() -> Iterator[Path]:
    yield from sorted((CHART.parent / "examples").glob("*.yaml"))


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
    for obj in objects:
        custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if custom is not None:
            jsonschema.validate(obj, custom)
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        picked = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert picked == [deployment["metadata"]["name"]], (deployment["metadata"]["name"], picked)
    receiver = next(d for d in deployments if d["spec"]["template"]["spec"]["containers"][0]["args"][0] == "lineage")
    main = receiver["spec"]["template"]["spec"]["containers"][0]
    assert main["args"][:2] == ["lineage", "serve"] and command_problem(main["args"]) is None, main["args"]
    assert {e["name"] for e in main["env"]} <= setting_variables()
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["COORDINATOR_LINEAGE_INSTANCES"] == "analytics" and env["COORDINATOR_LINEAGE_LISTEN"] == "0.0.0.0:9467"
