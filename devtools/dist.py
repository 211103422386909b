"""Build the release: ``make dist`` writes ``dist/`` with everything a platform team installs, nothing published.

    python -m devtools.dist [--out dist] [--no-image]

What it writes (VERSION is ``coordinator.__version__``, the one version source):

- ``airflow_etcd_coordinator-VERSION-py3-none-any.whl`` and ``airflow_etcd_coordinator-VERSION.tar.gz``: PyPA's
  ``build`` from a clean copy of the checkout's files (tracked and new, never ignored ones such as ``.venv``), then
  ``twine check --strict`` (what an index would refuse: metadata, the README's rendering). The wheel is pure Python
  (``COORDINATOR_PURE_PYTHON=1``: setup.py leaves the compiled reader out); the sdist holds the reader's C source,
  which an install from it compiles where a C compiler is;
- ``airflow-etcd-coordinator-VERSION.tgz``: the Helm chart in Helm's package layout (the chart's folder inside one
  top folder named after it), whose ``version`` and ``appVersion`` must equal VERSION;
- ``airflow-etcd-coordinator-VERSION-prometheus-rules.yaml``: the alert rules as a plain Prometheus rules file
  (``rule_files:``), byte for byte the chart's ``files/prometheus-rules.yaml`` (what its PrometheusRule holds);
- ``airflow-etcd-coordinator-VERSION-grafana-dashboard.json``: the watchers' Grafana dashboard, byte for byte the
  chart's ``files/grafana-dashboard.json`` (devtools/dashboard.py builds it);
- ``airflow-etcd-coordinator-examples-VERSION.tar.gz``: what the how-tos use besides the package, so a team needs
  nothing but ``dist/``: the example DAGs, ``dependencies.json``, the chart's example values and etcd manifests
  (``charts/examples/``), the managed services' recipes and the reference pages (``docs/reference/``: every
  command, setting, metric and schema field), at their checkout paths under one top folder;
- ``airflow-etcd-coordinator-watcher-VERSION.tar``: the watcher image (``devtools.image``) as an OCI archive, which
  ``skopeo copy``, ``podman load`` or ``buildah pull`` take;
- ``airflow-etcd-coordinator-watcher-VERSION.cdx.json``: the image's SBOM (CycloneDX JSON): its Python environment
  (``cyclonedx-py environment`` on the image's own venv, run from the pinned ``.venv-sbom``: devtools/tool_venv.py),
  the image and its manifest digest, and the Debian packages of its dpkg database (devtools/sbom.py), validated
  against CycloneDX's schema;
- ``SHA256SUMS``: every artifact above, in ``sha256sum -c`` form.

Before it builds anything it refuses a release whose version is not the same everywhere: the chart, and a
``CHANGELOG.md`` section for it. Every time stamp it controls is the last commit's (``SOURCE_DATE_EPOCH``), so two
builds of one checkout give the same wheel, chart and examples bytes (the sdist's gzip header carries setuptools'
own clock).
``--no-image`` skips the two image artifacts (a machine without buildah, or the quick tests of the Python and chart
artifacts).

It runs in ``.venv-release`` (``make dist`` builds it from ``constraints/release.txt``: devtools/tool_venv.py), not in
the dev venv: this module imports only the standard library and the checkout, and runs PyPA's ``build`` and ``twine``
with its own interpreter; an interpreter without them is refused before anything is built, saying how to get them.
No helm is needed (the chart is packaged with ``tarfile``) and no promtool (the tests check the rules file).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coordinator import __version__
from devtools import image, prometheus, sbom, tool_venv

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "airflow-etcd-coordinator"
CHANGELOG = REPO / "CHANGELOG.md"
#: The watchers' dashboard as devtools/dashboard.py writes it (that module needs grafana-foundation-sdk, which a release
#: does not: the path alone is named here).
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
#: What ``build_python`` runs with this interpreter (``python -m NAME``): the release venv's tools.
PYTHON_TOOLS = ("build", "twine")
PACKAGE = "airflow_etcd_coordinator"
WATCHER = "airflow-etcd-coordinator-watcher"
#: Where the image keeps its venv (docker/watcher.Containerfile): the environment the SBOM describes.
IMAGE_VENV = "opt/coordinator"
SUMS = "SHA256SUMS"
EXAMPLES_NAME = "airflow-etcd-coordinator-examples"
#: What the examples archive holds, as paths of the checkout: the example DAGs, their graph, the chart's example
#: values and etcd manifests, the managed services' recipes, the reference pages (CLI, settings, metrics, schema: their
#: generated text is committed, ``devtools/reference_pages.py``). Inside the archive they keep these paths (under one
#: top folder), so a how-to's command reads the same in a checkout and where the archive was unpacked.
EXAMPLES = ("dags", "dependencies.json", "charts/examples", "docs/managed/recipes", "docs/reference")


class DistError(RuntimeError):
    """A release cannot be built as asked; the message says what is wrong and the command that fixes it."""


@dataclass(frozen=True)
class Release:
    """What one ``make dist`` wrote, by role (None: not built this time)."""

    out: Path
    version: str
    wheel: Path
    sdist: Path
    chart: Path
    rules: Path
    dashboard: Path
    examples: Path
    image: Path | None
    sbom: Path | None
    sums: Path

    def artifacts(self) -> list[Path]:
        every = (self.wheel, self.sdist, self.chart, self.rules, self.dashboard, self.examples, self.image, self.sbom)
        return [p for p in every if p is not None]


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def chart_versions(chart: Path = CHART) -> tuple[str, str]:
    """Chart.yaml's ``version`` and ``appVersion``, read as Helm does (top-level scalars, quotes stripped)."""
    found: dict[str, str] = {}
    for line in (chart / "Chart.yaml").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(version|appVersion):\s*[\"']?([^\"'\s#]+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found.get("version", ""), found.get("appVersion", "")


def changelog_versions(changelog: Path = CHANGELOG) -> list[str]:
    """The released versions CHANGELOG.md has a section for (``## [X.Y.Z] - DATE``), newest first."""
    if not changelog.is_file():
        return []
    return re.findall(r"^## \[(\d[^\]]*)\]", changelog.read_text(encoding="utf-8"), flags=re.MULTILINE)


def version_problems(version: str = __version__, chart: Path = CHART, changelog: Path = CHANGELOG) -> list[str]:
    """Every place that must carry ``version`` and does not, each with the edit that fixes it."""
    problems = []
    chart_version, app_version = chart_versions(chart)
    where = f"{chart.relative_to(REPO) if chart.is_relative_to(REPO) else chart}/Chart.yaml"
    if chart_version != version:
        problems.append(f"{where}: version is {chart_version!r}, the package's {version!r}: set `version: {version}`")
    if app_version != version:
        fix = f'set `appVersion: "{version}"`'
        problems.append(f"{where}: appVersion is {app_version!r}, the package's {version!r}: {fix}")
    if version not in changelog_versions(changelog):
        fix = f"add `## [{version}] - YYYY-MM-DD` above the older sections"
        problems.append(f"{changelog.name} has no section for {version}: {fix}")
    return problems


def source_date_epoch() -> int:
    """The last commit's time, the time stamp of every file the release writes (reproducible builds' convention)."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    done = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else 315532800


def checkout_files() -> list[str]:
    """The checkout's files as a fresh clone plus the work in progress would hold them: tracked and new, no ignored
    ones (a developer's .venv, build/ or dist/ must never reach an sdist)."""
    done = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise DistError(f"cannot list the checkout's files (git ls-files): {done.stderr.strip()}")
    return sorted(name for name in done.stdout.split("\0") if name and (REPO / name).is_file())


def run(command: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-3000:]
        raise DistError(f"{what} failed ({' '.join(command)} exited {done.returncode}):\n{output}")
    return done.stdout


def build_python(out: Path, epoch: int) -> tuple[Path, Path]:
    """The sdist, then the wheel from it (``python -m build``'s default, so the sdist is proven to build), from a
    clean copy of the checkout, then ``twine check --strict`` on both."""
    with tempfile.TemporaryDirectory(prefix="coordinator-dist-") as tmp:
        source = Path(tmp) / "src"
        for name in checkout_files():
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target)
        # The wheel without the compiled reader (setup.py): one wheel for every platform and Python an Airflow image
        # has; the sdist carries its source, and an install from it (the watcher image's) builds it.
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "COORDINATOR_PURE_PYTHON": "1"}
        say(">> building the wheel and the sdist (python -m build, isolated)")
        run([sys.executable, "-m", "build", "--outdir", str(out), str(source)], "python -m build", env=env)
    wheel = out / f"{PACKAGE}-{__version__}-py3-none-any.whl"
    sdist = out / f"{PACKAGE}-{__version__}.tar.gz"
    for path in (wheel, sdist):
        if not path.is_file():
            raise DistError(f"python -m build did not write {path.name}; found {sorted(p.name for p in out.iterdir())}")
    say(">> twine check --strict")
    run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], "twine check --strict")
    return wheel, sdist


def write_tgz(target: Path, members: list[tuple[str, Path]], epoch: int) -> None:
    """``members`` (name inside, file) as a gzip tar at ``target``: in the given order, owned by root, mode 0644,
    stamped with ``epoch`` (gzip header included), so the bytes depend on the files alone."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in members:
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), epoch, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    with target.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=epoch, filename="") as zipped:
        zipped.write(buffer.getvalue())


def package_chart(out: Path, epoch: int, chart: Path = CHART) -> Path:
    """The chart as ``helm package`` lays it out: ``NAME/...`` inside ``NAME-VERSION.tgz``, files in a stable order."""
    name = chart.name
    target = out / f"{name}-{__version__}.tgz"
    files = sorted(p for p in chart.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    write_tgz(target, [(f"{name}/{path.relative_to(chart).as_posix()}", path) for path in files], epoch)
    say(f">> packaged the chart: {target.name}")
    return target


def package_examples(out: Path, epoch: int) -> Path:
    """The checkout's files under :data:`EXAMPLES` (tracked and new, as :func:`checkout_files` lists them) inside
    one top folder ``EXAMPLES_NAME-VERSION/``, at the same paths as in the checkout."""
    top = f"{EXAMPLES_NAME}-{__version__}"
    target = out / f"{top}.tar.gz"
    names = [n for n in checkout_files() if any(n == e or n.startswith(f"{e}/") for e in EXAMPLES)]
    missing = [e for e in EXAMPLES if not any(n == e or n.startswith(f"{e}/") for n in names)]
    if missing:
        raise DistError(f"the examples archive needs {', '.join(missing)}, which the checkout does not hold")
    write_tgz(target, [(f"{top}/{name}", REPO / name) for name in names], epoch)
    say(f">> packaged the examples: {target.name} ({len(names)} files)")
    return target


def copy_monitoring(out: Path) -> tuple[Path, Path]:
    """The alert rules as a plain rules file and the Grafana dashboard, the chart's own bytes (one source each:
    devtools.prometheus.RULES, devtools.dashboard.DASHBOARD)."""
    rules = out / f"{CHART.name}-{__version__}-prometheus-rules.yaml"
    shutil.copyfile(prometheus.RULES, rules)
    board = out / f"{CHART.name}-{__version__}-grafana-dashboard.json"
    shutil.copyfile(DASHBOARD, board)
    say(f">> copied the alert rules and the dashboard: {rules.name}, {board.name}")
    return rules, board


def image_artifacts(out: Path, epoch: int, tag: str | None = None) -> tuple[Path, Path]:
    """The watcher image, built as ``make image`` builds it (buildah's layer cache makes a rebuild quick), then
    :func:`export_image`."""
    return export_image(out, epoch, image.build(tag).tag)


def export_image(out: Path, epoch: int, tag: str) -> tuple[Path, Path]:
    """The image ``tag`` of the local store pushed to an OCI archive named ``WATCHER:VERSION`` inside (what ``podman
    load`` names it), and its CycloneDX SBOM (devtools/sbom.py): the Python environment as ``cyclonedx-py`` lists it,
    the image with its manifest digest, a serial number, and the Debian packages of the image's dpkg database;
    checked with CycloneDX's schema validator before it is kept."""
    archive = out / f"{WATCHER}-{__version__}.tar"
    archive.unlink(missing_ok=True)
    say(f">> writing {tag} to {archive.name} (OCI archive)")
    with tempfile.TemporaryDirectory(prefix="coordinator-digest-") as tmp:
        digest_file = Path(tmp) / "digest"
        image.buildah("push", "--quiet", "--format", "oci", "--digestfile", str(digest_file), tag,
                      f"oci-archive:{archive}:{WATCHER}:{__version__}")  # fmt: skip
        digest = digest_file.read_text(encoding="utf-8").strip()
    arch = json.loads(image.buildah("inspect", "--type", "image", tag, capture=True))["OCIv1"]["architecture"]
    sbom_path = out / f"{WATCHER}-{__version__}.cdx.json"
    sbom_path.unlink(missing_ok=True)
    say(f">> writing the SBOM of the image ({digest}): {sbom_path.name}")
    container = image.buildah("from", "--pull=never", tag, capture=True).strip()
    try:
        root = Path(image.buildah("mount", container, capture=True).strip())
        # cyclonedx-py asks the environment's own interpreter for its paths, whichever venv cyclonedx-py runs from:
        # the image's venv python is a link to Debian's /usr/bin/python3, which resolves to this host's Python 3.11
        # and reads the image's site-packages. cyclonedx-bom lives in its own pinned venv (.venv-sbom): in the dev
        # venv its jsonschema extras would slow every Airflow process the tests start.
        generator = tool_venv.python(tool_venv.ensure_tool(tool_venv.SBOM))
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
        with tempfile.TemporaryDirectory(prefix="coordinator-sbom-") as tmp:
            python_only = Path(tmp) / "python.cdx.json"
            run([str(generator), "-m", "cyclonedx_py", "environment", "--output-reproducible", "--of", "JSON",
                 "-o", str(python_only), str(root / IMAGE_VENV)], "cyclonedx-py environment", env=env)  # fmt: skip
            bom = json.loads(python_only.read_text(encoding="utf-8"))
        try:
            whole = sbom.complete(bom, name=WATCHER, version=__version__, digest=digest, arch=arch, root=root)
        except ValueError as exc:
            raise DistError(f"the image's SBOM: {exc}") from exc
    finally:
        image.discard(container)
    sbom.write(sbom_path, whole)
    problem = sbom.validate(sbom_path, generator)
    if problem is not None:
        sbom_path.unlink()
        raise DistError(f"the image's SBOM is not valid CycloneDX:\n{problem[-3000:]}")
    return archive, sbom_path


def write_sums(out: Path, artifacts: list[Path]) -> Path:
    """``SHA256SUMS`` in ``sha256sum`` form (two spaces, names relative to ``out``): ``sha256sum -c SHA256SUMS``."""
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in sorted(artifacts)]
    sums = out / SUMS
    sums.write_text("".join(lines), encoding="utf-8")
    return sums


def build(out: Path, with_image: bool = True, tag: str | None = None) -> Release:
    """Everything above into ``out`` (emptied of earlier artifacts of any version first)."""
    problems = version_problems(__version__, CHART, CHANGELOG)
    if problems:
        raise DistError("the version is not the same everywhere:\n  " + "\n  ".join(problems))
    # origin None: a folder of that name on sys.path (a namespace package, e.g. a stray build/), not the tool.
    missing = [name for name in PYTHON_TOOLS if getattr(importlib.util.find_spec(name), "origin", None) is None]
    if missing:
        raise DistError(
            f"{' and '.join(missing)} not found in {sys.executable}: `make dist` runs in .venv-release, a venv with "
            f"PyPA's build and twine pinned by constraints/release.txt, which it builds first. Run `make dist`, or:\n"
            f"  python3 -m devtools.tool_venv venv release && .venv-release/bin/python -m devtools.dist"
        )
    if with_image and image.missing_tools():
        raise DistError(
            f"{' and '.join(image.missing_tools())} not found: the watcher image (an artifact of the release) is built "
            f"with Debian's buildah from a base made with debootstrap. Install them (Debian or Ubuntu):\n"
            f"  {image.INSTALL_COMMAND}\n"
            "or build every other artifact without the image: make dist DIST_ARGS=--no-image"
        )
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_file() and (old.name == SUMS or old.name.startswith((PACKAGE, CHART.name))):
            old.unlink()
    epoch = source_date_epoch()
    wheel, sdist = build_python(out, epoch)
    chart = package_chart(out, epoch, CHART)
    rules, board = copy_monitoring(out)
    examples = package_examples(out, epoch)
    archive, sbom = image_artifacts(out, epoch, tag) if with_image else (None, None)
    sums = write_sums(out, [p for p in (wheel, sdist, chart, rules, board, examples, archive, sbom) if p is not None])
    return Release(out, __version__, wheel, sdist, chart, rules, board, examples, archive, sbom, sums)


def human_size(size: int) -> str:
    """A file's size as the summary prints it: a chart or an SBOM of a few kB is not ``0.0 MB``."""
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dist", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where to write (default: dist/)")
    parser.add_argument("--no-image", action="store_true", help="skip the image archive and its SBOM (no buildah)")
    args = parser.parse_args(argv)
    try:
        release = build(args.out.resolve(), with_image=not args.no_image)
    except (DistError, image.ImageError) as exc:
        sys.stderr.write(f"dist: {exc}\n")
        return 1
    say(f">> release {release.version} in {release.out}:")
    for path in [*release.artifacts(), release.sums]:
        say(f"   {path.name}  ({human_size(path.stat().st_size)})")
    say(f">> verify: (cd {release.out} && sha256sum -c {SUMS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
