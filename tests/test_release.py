"""The release ``make dist`` writes (devtools/dist.py), built here as a user builds it (``python -m devtools.dist``):
the wheel, the sdist and the packaged chart with their SHA256SUMS, one version in every place that carries one, the
wheel installed into a fresh venv and into a fresh Airflow 3.3 venv with its plugin loaded by Airflow and writing to
a real etcd. The image archive and its SBOM are built and run in tests/scenario/test_watcher_image.py, beside the
image's other tests (one image build per run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import helm_python as helm
import pytest
import yaml

import coordinator
from devtools import dashboard, dist, prometheus, tool_venv
from tests.support.release import released_venv
from tests.test_helm_chart import (
    KUBERNETES,
    KUBERNETES_PAGE,
    PACKAGED,
    REQUIRED,
    deps_text,
    documented_installs,
    documented_unpacking,
    merged,
    platform_values,
    render,
    validate_graph,
    validate_strictly,
    values_of,
)

#: Builds the package and installs it into fresh environments with pip (minutes): not in `make fast`.
pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
VERSION = coordinator.__version__
WHEEL = f"airflow_etcd_coordinator-{VERSION}-py3-none-any.whl"
SDIST = f"airflow_etcd_coordinator-{VERSION}.tar.gz"
CHART_TGZ = f"airflow-etcd-coordinator-{VERSION}.tgz"
RULES = f"airflow-etcd-coordinator-{VERSION}-prometheus-rules.yaml"
DASHBOARD = f"airflow-etcd-coordinator-{VERSION}-grafana-dashboard.json"
EXAMPLES = f"airflow-etcd-coordinator-examples-{VERSION}.tar.gz"


def make_dist(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m devtools.dist --no-image --out OUT`` (what ``make dist`` runs, less the image), from the checkout,
    with the release venv's interpreter as ``make dist`` runs it (built once from constraints/release.txt)."""
    python = tool_venv.python(tool_venv.ensure_tool(tool_venv.RELEASE))
    command = [str(python), "-m", "devtools.dist", "--no-image", "--out", str(out), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ as ``make dist`` writes it, once for the module."""
    out = tmp_path_factory.mktemp("dist")
    done = make_dist(out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_make_dist_writes_every_artifact_with_its_checksum(release: Path) -> None:
    """dist/ holds the wheel, the sdist, the chart package, the alert rules file, the Grafana dashboard, the examples
    archive and SHA256SUMS naming exactly those, and `sha256sum -c` verifies every one."""
    artifacts = [WHEEL, SDIST, CHART_TGZ, RULES, DASHBOARD, EXAMPLES]
    assert sorted(p.name for p in release.iterdir()) == sorted([*artifacts, "SHA256SUMS"])
    listed = sorted(line.split("  ", 1)[1] for line in (release / "SHA256SUMS").read_text().splitlines())
    assert listed == sorted(artifacts)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") == len(artifacts), check.stdout + check.stderr


def test_the_released_rules_file_is_the_charts_and_passes_the_documented_promtool_check(release: Path) -> None:
    """The released rules file and dashboard are byte for byte the chart's, and the `promtool check
    rules` command docs/howto/monitor.md shows, run in dist/, accepts it."""
    assert (release / RULES).read_bytes() == prometheus.RULES.read_bytes()
    assert (release / DASHBOARD).read_bytes() == dashboard.DASHBOARD.read_bytes()
    page = (ROOT / "docs" / "howto" / "monitor.md").read_text(encoding="utf-8")
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", page, re.S) for line in block.splitlines()
                if line.strip().startswith("promtool ")]  # fmt: skip
    assert commands == [f"promtool check rules {RULES}"], commands
    words = commands[0].split()
    done = subprocess.run([prometheus.binary("promtool"), *words[1:]], cwd=release, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_one_version_in_the_package_the_wheel_the_chart_and_the_changelog(release: Path) -> None:
    """The wheel's metadata, the packaged Chart.yaml's version and appVersion and CHANGELOG.md's newest release all
    carry coordinator.__version__, and pyproject.toml reads the version from there instead of holding its own."""
    with zipfile.ZipFile(release / WHEEL) as wheel:
        metadata = wheel.read(f"airflow_etcd_coordinator-{VERSION}.dist-info/METADATA").decode()
    assert re.search(r"^Version: (.+)$", metadata, flags=re.MULTILINE).group(1) == VERSION  # type: ignore[union-attr]
    with tarfile.open(release / CHART_TGZ) as chart:
        meta = yaml.safe_load(chart.extractfile("airflow-etcd-coordinator/Chart.yaml").read())  # type: ignore[union-attr]
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    assert dist.changelog_versions()[0] == VERSION
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject and 'attr = "coordinator.__version__"' in pyproject
    assert dist.version_problems() == []


def test_a_release_whose_chart_or_changelog_lags_is_refused_with_the_edit(tmp_path: Path) -> None:
    """`make dist` exits 1 before building anything when Chart.yaml or CHANGELOG.md carry another version, naming
    the file, both versions and the line to write."""
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text('apiVersion: v2\nname: x\nversion: 9.9.9\nappVersion: "9.9.8"\n')
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## [9.9.9] - 2030-01-01\n")
    problems = dist.version_problems(VERSION, chart, changelog)
    assert problems == [
        f"{chart}/Chart.yaml: version is '9.9.9', the package's {VERSION!r}: set `version: {VERSION}`",
        f"{chart}/Chart.yaml: appVersion is '9.9.8', the package's {VERSION!r}: set `appVersion: \"{VERSION}\"`",
        f"CHANGELOG.md has no section for {VERSION}: add `## [{VERSION}] - YYYY-MM-DD` above the older sections",
    ]
    out = tmp_path / "out"
    code = [
        "import sys; from pathlib import Path; from devtools import dist",
        f"dist.CHART = Path({str(chart)!r}); dist.CHANGELOG = Path({str(changelog)!r})",
        f"sys.exit(dist.main(['--no-image', '--out', {str(out)!r}]))",
    ]
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(code)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "the version is not the same everywhere" in done.stderr and "set `version:" in done.stderr, done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_the_wheel_and_sdist_hold_the_package_its_licence_and_no_dev_code(release: Path) -> None:
    """The wheel holds coordinator/ and its dist-info with the Apache-2.0 LICENSE; the sdist holds the package, the
    metadata, LICENSE, CHANGELOG.md and SECURITY.md, and no tests, dev tooling, benchmarks, demo DAGs or docs."""
    with zipfile.ZipFile(release / WHEEL) as wheel:
        names = wheel.namelist()
    assert {n.split("/")[0] for n in names} == {"coordinator", f"airflow_etcd_coordinator-{VERSION}.dist-info"}
    licence = wheel_licence = f"airflow_etcd_coordinator-{VERSION}.dist-info/licenses/LICENSE"
    assert licence in names
    with zipfile.ZipFile(release / WHEEL) as wheel:
        assert "Apache License" in wheel.read(wheel_licence).decode()
    with tarfile.open(release / SDIST) as sdist:
        tops = {name.split("/")[1] for name in sdist.getnames() if "/" in name}
    assert {"coordinator", "LICENSE", "CHANGELOG.md", "SECURITY.md", "README.md", "pyproject.toml"} <= tops
    assert not tops & {"tests", "devtools", "bench", "dags", "docs", "charts", ".venv", "dist"}, tops


def test_the_wheel_is_pure_python_and_an_install_from_the_sdist_compiles_the_readers(
    release: Path, tmp_path: Path
) -> None:
    """The wheel holds no compiled module and no C source (one wheel for every platform and Python an Airflow image
    has); the sdist holds the compiled readers' sources, and pip installing the sdist where a C compiler is (here)
    builds both: the installed package reads the store's pages and values with them, and walks a full pass with them."""
    with zipfile.ZipFile(release / WHEEL) as wheel:
        assert not [n for n in wheel.namelist() if n.endswith((".so", ".c", ".pyd"))]
    with tarfile.open(release / SDIST) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "coordinator/core/_native.c", "coordinator/core/_native.h", "coordinator/core/_facts.c",
            "coordinator/core/_facts.h", "coordinator/core/_load.c", "coordinator/core/_slots.c",
            "coordinator/core/_settled.c", "coordinator/etcd/_range.c"} <= names  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", str(release / SDIST)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # The package's deps are not installed: each module loaded from its file alone (``coordinator.etcd``'s package
    # would import the client and pydantic).
    [pages] = venv.glob("lib/python*/site-packages/coordinator/etcd/_range.*so")
    probe = (
        "import importlib.util as u, sys, coordinator.core._native as n; s = u.spec_from_file_location('_range', "
        "sys.argv[1]); r = u.module_from_spec(s); s.loader.exec_module(r); print(n.run_fact, r.read_page, n.RunFact, "
        "n.SettledWalk)"
    )
    read = subprocess.run([python, "-c", probe, str(pages)], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert read.returncode == 0 and "built-in function run_fact" in read.stdout, read
    assert "built-in function read_page" in read.stdout and "facts.RunFact" in read.stdout, read
    assert "_native.SettledWalk" in read.stdout, read


def test_two_builds_of_one_checkout_give_the_same_wheel_chart_and_examples(release: Path, tmp_path: Path) -> None:
    """A second `make dist` of the same checkout writes a byte-identical wheel, chart package and examples archive
    (every time stamp is the last commit's), so a team can rebuild a release and compare its SHA256SUMS."""
    done = make_dist(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    first = dict(reversed(line.split("  ", 1)) for line in (release / "SHA256SUMS").read_text().splitlines())
    second = dict(reversed(line.split("  ", 1)) for line in (tmp_path / "SHA256SUMS").read_text().splitlines())
    assert first[WHEEL] == second[WHEEL] and first[CHART_TGZ] == second[CHART_TGZ]
    assert first[EXAMPLES] == second[EXAMPLES]


def test_the_examples_archive_holds_what_the_how_tos_use_at_their_checkout_paths(release: Path) -> None:
    """The examples archive holds, under one top folder, exactly the checkout's example DAGs, dependencies.json, the
    chart's example values and etcd manifests, the managed services' recipes and the reference pages, byte for byte,
    root-owned files."""
    top = f"airflow-etcd-coordinator-examples-{VERSION}/"
    with tarfile.open(release / EXAMPLES) as tar:
        members = tar.getmembers()
        contents = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    assert all(m.isfile() and m.uid == 0 and m.name.startswith(top) for m in members), [m.name for m in members]
    expected = {name for name in dist.checkout_files() if name.startswith(tuple(f"{e}/" for e in dist.EXAMPLES))}
    expected |= {"dependencies.json"}
    assert {name.removeprefix(top) for name in contents} == expected
    for name, data in contents.items():
        assert data == (ROOT / name.removeprefix(top)).read_bytes(), name
    for needed in ("dags/01_pipeline.py", "dags/example_pipeline.py", "charts/examples/platform-values.yaml",
                   "charts/examples/platform-dependencies.json", "docs/managed/recipes/astro-values.yaml",
                   "docs/reference/settings.md", "docs/reference/cli.md"):  # fmt: skip
        assert needed in expected, needed


def test_the_kubernetes_commands_render_the_packaged_chart_from_dist_alone(
    release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a clean directory holding only dist/, docs/howto/kubernetes.md's own `tar` command unpacks the examples
    archive, and each of its `helm upgrade --install` commands, its values and files read from there and its chart
    loaded from the packaged .tgz by Helm's loader, renders objects valid on every supported Kubernetes release and
    the graph the command gave, which the real `coordinator validate` accepts."""
    where = tmp_path / "clean"
    (where / "dist").mkdir(parents=True)
    for name in (CHART_TGZ, EXAMPLES):
        (where / "dist" / name).write_bytes((release / name).read_bytes())
    unpack = documented_unpacking(KUBERNETES_PAGE)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", unpack], cwd=where, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    packaged = helm.Chart.load(where / PACKAGED)
    commands = documented_installs()
    assert len(commands) == 3, commands
    monkeypatch.chdir(where)  # Helm reads --set-file paths from the working directory, as the user's shell would
    for command in commands:
        values = values_of(command, tmp_path, base=where)
        objects = render(packaged, values)
        for version in KUBERNETES:
            validate_strictly(objects, version)
        text = deps_text(objects)
        given = values["deps"]["content"]
        assert text == given if isinstance(given, str) else json.loads(text) == given
        validate_graph(text, tmp_path)


def test_the_packaged_chart_renders_the_repositorys_graph_from_the_tgz(release: Path, tmp_path: Path) -> None:
    """Helm's own loader (helm-python-sdk) reads the .tgz as the chart at the package's version, and rendered with
    the values a release needs and `--set-file deps.content=dependencies.json`, it puts the repository's graph in
    the pods' ConfigMap byte for byte, which the real `coordinator validate` accepts."""
    packaged = helm.Chart.load(release / CHART_TGZ)
    assert packaged.metadata["name"] == "airflow-etcd-coordinator"
    assert (packaged.metadata["version"], packaged.metadata["appVersion"]) == (VERSION, VERSION)
    source = ROOT / "dependencies.json"
    given = helm.parse_set_file(f"deps.content={source}")
    values = merged({k: v for k, v in REQUIRED.items() if k != "deps"}, given)
    text = deps_text(render(packaged, values))
    assert text == source.read_text(encoding="utf-8")
    assert "7 DAGs, 9 edges" in validate_graph(text, tmp_path)


def test_the_packaged_chart_renders_the_platform_example_as_valid_kubernetes(release: Path) -> None:
    """The .tgz rendered with the platform team's example values (three Airflows, TLS etcd with client certificates,
    auth, a PodMonitor) gives the same objects as the chart folder, each valid in strict mode on every supported
    Kubernetes release, with the image tag defaulting to the package's version."""
    packaged = render(helm.Chart.load(release / CHART_TGZ), platform_values())
    assert packaged == render(helm.Chart.load(ROOT / "charts" / "airflow-etcd-coordinator"), platform_values())
    for version in KUBERNETES:
        validate_strictly(packaged, version)
    (deployment,) = [o for o in packaged if o["kind"] == "Deployment"]
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert all(image.endswith(f":{VERSION}") for image in images), images


@pytest.fixture(scope="module")
def installed(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the released wheel and Airflow 3.3 (the `airflow` extra), pinned as the tests are; the
    README walkthrough (tests/e2e/test_readme_e2e.py) reuses the same one (devtools/release_venv.py)."""
    return released_venv(release / WHEEL, tmp_path_factory)


def test_the_released_wheel_runs_from_a_fresh_venv(installed: Path) -> None:
    """The wheel's console script runs from the fresh venv (not this checkout) and prints the release's version;
    its package is imported from that venv's site-packages. Slow by design: the module's fixture installs the
    wheel and Airflow 3.3 into a fresh venv (shared with the README walkthrough)."""
    version = subprocess.run([str(installed / "bin" / "coordinator"), "--version"], capture_output=True, text=True,
                             timeout=60, check=False, cwd="/")  # fmt: skip
    assert version.returncode == 0 and version.stdout.strip() == f"coordinator {VERSION}", version
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import coordinator; print(coordinator.__file__)"],
                           capture_output=True, text=True, timeout=60, check=True, cwd="/")  # fmt: skip
    assert where.stdout.strip().startswith(str(installed)), where.stdout


def test_airflow_loads_the_released_plugin_and_it_writes_to_etcd(
    installed: Path, tmp_path: Path, etcd_endpoint: str, etcd_prefix: str
) -> None:
    """In the fresh Airflow 3.3 venv, `airflow plugins` lists the wheel's etcd_coordinator plugin with its listener,
    and `coordinator check-plugin` runs the plugin's hook through Airflow's plugin manager into a real etcd."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COORDINATOR"))},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "COORDINATOR_ETCD_ENDPOINTS": etcd_endpoint,
        "COORDINATOR_PREFIX": etcd_prefix,
        "COORDINATOR_INSTANCE": "release_check",
        "TMPDIR": str(tmp_path),  # the plugin's task-name cache (coordinator-tasks-*.json): not into the host's /tmp
    }
    plugins = subprocess.run([str(installed / "bin" / "airflow"), "plugins", "--output", "json"], env=env,
                             capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)  # fmt: skip
    assert plugins.returncode == 0, plugins.stderr[-3000:]
    found = {p["name"]: p for p in json.loads(plugins.stdout)}
    assert "etcd_coordinator" in found, sorted(found)
    assert "listener" in json.dumps(found["etcd_coordinator"]).lower(), found["etcd_coordinator"]
    check = subprocess.run([str(installed / "bin" / "coordinator"), "check-plugin"], env=env,
                           capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)  # fmt: skip
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]


@pytest.mark.parametrize(
    ("size", "shown"),
    [(31_507, "31.5 kB"), (111_400_000, "111.4 MB"), (640, "640 B")],
    ids=["a-chart", "an-image", "a-checksum-file"],
)
def test_the_summary_prints_each_artifacts_size_in_a_unit_it_shows(size: int, shown: str) -> None:
    """make dist's summary prints a chart or an SBOM of a few kB in kB, not as 0.0 MB."""
    assert dist.human_size(size) == shown
