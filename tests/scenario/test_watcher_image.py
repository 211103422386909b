"""The watcher image (docker/watcher.Containerfile), built here with buildah as `make image` builds it: its size, its
user, what it holds and does not, and a real cascade run by ``coordinator watch`` inside it, once under ``buildah
run`` and once on its root filesystem mounted read-only as UID 65532 (the chart's readOnlyRootFilesystem), against
a real etcd and the fake Airflow on loopback. The release's image artifacts (`make dist`): the OCI archive loaded into
an empty store runs the same cascade, and the SBOM validates, names the image's digest and lists exactly the image's
Python and Debian packages.

Needs root, buildah and debootstrap (`make pytest` installs them on Debian, as it does chromium); elsewhere these
tests skip, saying so. tests/conftest.py runs them in one worker so the image is built once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import coordinator
from devtools import dist, image, sbom, tool_venv
from tests.scenario.conftest import DOWNSTREAM, LAST, SEVEN_DAGS, Stack, new_partition

pytestmark = [pytest.mark.scenario, pytest.mark.image]

#: Why these tests cannot run here, or None when they can.
CANNOT_BUILD = (
    "building the watcher image needs root (buildah's chroot isolation and its storage)"
    if os.geteuid() != 0
    else f"{' and '.join(image.missing_tools())} not installed (make pytest installs Debian's packages)"
    if image.missing_tools()
    else None
)
if CANNOT_BUILD:
    pytestmark.append(pytest.mark.skip(reason=CANNOT_BUILD))

VENV = "/opt/coordinator"
#: Names that must not be in the image: build tools, package managers, shells.
FORBIDDEN_PROGRAMS = {"gcc", "cc", "g++", "c++", "clang", "ld", "as", "make", "pip", "pip3", "apt", "apt-get", "dpkg",
                      "sh", "bash", "dash"}  # fmt: skip
#: Files that look like secrets or a developer's state. The CA bundles of certifi, grpc and Debian are public.
SECRET_NAMES = (".env", ".netrc", ".pypirc", "pip.conf", "id_rsa", "id_ed25519", "credentials", "passwords.json",
                "dependencies.json", "instances.json", ".git")  # fmt: skip


def _buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["buildah", *image.storage(), *args]
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(scope="module")
def built() -> image.Built:
    """The image as `make image` builds it (the store's layer cache makes a rebuild of unchanged steps quick)."""
    return image.build()


@pytest.fixture
def container(built: image.Built) -> Iterator[str]:
    """A working container of the image, removed afterwards."""
    name = _buildah("from", "--pull=never", built.tag).stdout.strip()
    try:
        yield name
    finally:
        _buildah("rm", name, check=False)


@pytest.fixture
def rootfs(container: str) -> Iterator[Path]:
    """The container's root filesystem, mounted on the host."""
    yield Path(_buildah("mount", container).stdout.strip())
    _buildah("umount", container, check=False)


@pytest.fixture
def shared(stack: Stack) -> Path:
    """A folder UID 65532 may read (pytest's own are root's, mode 0700), under /tmp, holding the stack's deps file."""
    folder = Path(tempfile.mkdtemp(prefix="coordinator-image-"))
    folder.chmod(0o755)
    stack.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
    stack.deps = folder / "dependencies.json"
    stack.set_deps(SEVEN_DAGS)
    stack.deps.chmod(0o644)
    return folder


def run_in(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``buildah run`` in the container. Asked again (up to three times) when the process's output is missing: under
    load buildah's chroot run sometimes forwards none of a short process's output (fresh-clone runs saw ``id`` print
    nothing with status 0, and ``python3 -c "import airflow"`` exit 1 with only buildah's own "exit status 1" lines);
    every command run here prints something, and the callers check what."""
    done = _buildah("run", "--isolation", "chroot", container, "--", *argv, check=False)
    for _ in range(2):
        if _printed(done):
            break
        done = _buildah("run", "--isolation", "chroot", container, "--", *argv, check=False)
    return done


def _printed(done: subprocess.CompletedProcess[str]) -> bool:
    """Whether the process in the container printed anything: stdout, or stderr beyond buildah's own lines about its
    exit status."""
    own = [line for line in done.stderr.splitlines() if line.strip() and not _BUILDAH_EXIT.match(line)]
    return bool(done.stdout.strip() or own)


#: buildah's own lines when the process exits non-zero (not the process's output).
_BUILDAH_EXIT = re.compile(r"^(subprocess exited with status \d+|Error: exit status \d+)$")


def test_the_image_builds_under_its_size_target(built: image.Built) -> None:
    """The image builds and its root filesystem is under the 150 MB target, uncompressed (printed beside it).
    Slow by design when it runs first: the module's fixture builds the image with buildah."""
    print(f"\n{built.tag}: {built.size_mb:.1f} MB uncompressed (target {image.TARGET_MB} MB)")
    assert 0 < built.size_mb < image.TARGET_MB


def test_the_size_the_kubernetes_guide_quotes_is_the_built_images(built: image.Built) -> None:
    """docs/howto/kubernetes.md's "**N MB** uncompressed" is this image's size within 3 MB (a dependency that grows
    the image fails here until the guide says so)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "howto" / "kubernetes.md").read_text(encoding="utf-8")
    quoted = re.search(r"\*\*(\d+) MB\*\* uncompressed", text)
    assert quoted, "docs/howto/kubernetes.md no longer quotes the image's size as **N MB** uncompressed"
    assert abs(int(quoted.group(1)) - built.size_mb) <= 3, (
        f"the guide says {quoted.group(1)} MB, the image is {built.size_mb:.1f} MB"
    )


def test_the_image_runs_coordinator_as_the_non_root_user(built: image.Built, container: str) -> None:
    """The image's user is 65532:65532, its entrypoint `coordinator`, its health check `coordinator probe healthz`,
    its OCI labels name version, source and revision; `coordinator --version` inside prints this package's version
    and a process inside runs as UID 65532."""
    config = json.loads(_buildah("inspect", "--type", "image", built.tag).stdout)["Docker"]["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["coordinator"] and config["Cmd"] == ["watch"]
    assert config["Healthcheck"]["Test"] == ["CMD", "coordinator", "probe", "healthz"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == coordinator.__version__
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.revision"] == image.revision()
    version = run_in(container, "coordinator", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"coordinator {coordinator.__version__}", version
    ids = run_in(container, "python3", "-c", "import os; print(os.getuid(), os.getgid())")
    assert ids.stdout.split() == ["65532", "65532"], ids


def test_a_rebuild_at_another_revision_is_labelled_with_it(built: image.Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that built one commit (`built`, at this checkout's), asked to build another, labels the image with
    the other commit's revision (buildah's layer cache once handed back the earlier label: CI saw a stale one)."""
    tag = f"{image.IMAGE}:revision-test"
    other = "1" * 40
    assert image.revision() != other
    monkeypatch.setattr(image, "revision", lambda: other)
    try:
        image.build(tag)
        config = json.loads(_buildah("inspect", "--type", "image", tag).stdout)["Docker"]["config"]
        assert config["Labels"]["org.opencontainers.image.revision"] == other
    finally:
        _buildah("rmi", tag, check=False)


def test_the_image_holds_no_airflow_compiler_shell_or_secret(container: str, rootfs: Path) -> None:
    """Airflow does not import inside; no compiler, package manager or shell is anywhere on the filesystem; no file
    looks like a secret or a developer's state; the build's CA secret left nothing under /run."""
    no_airflow = run_in(container, "python3", "-c", "import airflow")
    assert no_airflow.returncode != 0 and "No module named 'airflow'" in no_airflow.stderr, no_airflow
    found = [p for p in rootfs.rglob("*") if p.name in FORBIDDEN_PROGRAMS and (p.is_file() or p.is_symlink())]
    assert not found, found
    secrets = [p for p in rootfs.rglob("*") if p.name in SECRET_NAMES]
    assert not secrets, secrets
    assert not any((rootfs / "run").iterdir())
    site = next((rootfs / VENV.lstrip("/") / "lib").glob("python3.*/site-packages"))
    assert not list(site.glob("apache_airflow*")) and not list(site.glob("pip"))


def test_the_images_watcher_reads_the_store_with_the_compiled_readers(container: str) -> None:
    """The image's package was built with its compiled modules (``core/_native.c`` with ``core/_facts.c``,
    ``etcd/_range.c``), and ``core.canonical``, ``core.facts`` and ``etcd.range_page`` use them: the image's watcher
    starts at their speed and holds the compact facts, not Python's."""
    probe = "from coordinator.core import canonical, facts; from coordinator.etcd import range_page as r; "
    probe += "print(canonical.native_run_fact, r.compiled, facts.RunFact is not facts.NamedRunFact and 'compact')"
    done = run_in(container, "python3", "-c", probe)
    assert done.returncode == 0 and "built-in function run_fact" in done.stdout, done
    assert "coordinator.etcd._range" in done.stdout and "compact" in done.stdout, done


Launcher = Callable[[dict[str, str]], list[str]]


def buildah_run(container: str, tmp: Path, store: tuple[str, ...] | None = None) -> Launcher:
    """``coordinator`` under ``buildah run``: host network (loopback reaches etcd and the fake), the test's folder
    mounted at the same path (the deps file), the coordinator's settings passed in (the rest of the host's
    environment does not cross); ``store``: buildah's storage options (default: the build's store)."""

    def command(env: dict[str, str]) -> list[str]:
        settings = [f"--env={k}={v}" for k, v in env.items() if k.startswith("COORDINATOR_") or k == "PYTHONUNBUFFERED"]
        return ["buildah", *(store or image.storage()), "run", "--isolation", "chroot", "--volume", f"{tmp}:{tmp}:ro",
                *settings, container, "--", "coordinator"]  # fmt: skip

    return command


def read_only_root(rootfs: Path, tmp: Path, scratch: Path) -> Launcher:
    """``coordinator`` on the image's root filesystem mounted read-only, /tmp a fresh tmpfs, as UID 65532, in a mount
    namespace of its own (what a pod with readOnlyRootFilesystem and an emptyDir at /tmp gives), the test's folder
    (under /tmp) mounted at its own path; the view's mount point is in ``scratch``. ``unshare`` without ``--fork``
    and the shell ``exec`` into chroot and the watcher, so the process the test started IS the watcher: its TERM
    reaches it directly, and the mounts go with it. (A forking ``unshare`` ignores TERM while it waits, and the
    parent-death signal is cleared when ``chroot --userspec`` changes the user: both were tried, and left the
    watcher to a KILL after 30 s or running.)"""
    assert tmp.is_relative_to("/tmp"), f"the test folder {tmp} must be under /tmp, the image's one writable path"

    def command(env: dict[str, str]) -> list[str]:
        view = scratch / "ro-root"
        view.mkdir(exist_ok=True)
        script = (
            f"set -e; mount --bind {rootfs} {view}; mount -o remount,bind,ro {view}; "
            f"mount -t tmpfs -o mode=1777 tmpfs {view}/tmp; mount --rbind /dev {view}/dev; "
            f"mkdir -p {view}{tmp}; mount --bind {tmp} {view}{tmp}; "
            f'exec chroot --userspec=65532:65532 {view} {VENV}/bin/coordinator "$@"'
        )
        return ["unshare", "--mount", "sh", "-c", script, "coordinator"]

    return command


def test_a_cascade_runs_through_coordinator_watch_inside_the_image(stack: Stack, container: str, shared: Path) -> None:
    """`coordinator watch` run by `buildah run` inside the image adopts the graph, leads and triggers 02..07 once
    each after 01 succeeds, in dependency order."""
    stack.start_watcher("img", command=buildah_run(container, shared))
    partition = new_partition()
    stack.trigger_root(partition)
    stack.wait_success(LAST, partition)
    stack.settle()
    stack.assert_once(partition)
    stack.assert_order(partition)
    assert [stack.fake.creates(dag) for dag in DOWNSTREAM] == [1] * len(DOWNSTREAM)


def test_the_watcher_runs_on_a_read_only_root_as_65532(stack: Stack, rootfs: Path, shared: Path) -> None:
    """On the image's root filesystem mounted read-only, as UID 65532 with only /tmp writable, the watcher leads and
    runs the cascade once, nothing it does needs a write elsewhere (no read-only error in its log), and a TERM stops
    it cleanly (exit 0, as a pod's does)."""
    watcher = stack.start_watcher("ro", command=read_only_root(rootfs, shared, stack.tmp_path))
    partition = new_partition()
    stack.trigger_root(partition)
    stack.wait_success(LAST, partition)
    stack.settle()
    stack.assert_once(partition)
    assert watcher.stop() == 0 and "watcher.stopped" in watcher.log(), watcher.tail()
    assert "Read-only file system" not in watcher.log(), shlex.quote(watcher.tail())


@pytest.fixture(scope="module")
def released(built: image.Built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The built image as `make dist` exports it: the OCI archive and the SBOM of its Python environment."""
    return dist.export_image(tmp_path_factory.mktemp("dist"), dist.source_date_epoch(), built.tag)


@pytest.fixture
def empty_store(stack: Stack) -> tuple[str, ...]:
    """A buildah store of its own, empty (root and run root in a new folder): what another machine or a registry
    holds before the archive arrives; its containers and images are removed, and the folder, after the stack's
    watchers stopped (a watcher run from the store holds its container mounted until then)."""
    folder = Path(tempfile.mkdtemp(prefix="coordinator-store-"))
    store = (*image.storage(), "--root", str(folder / "root"), "--runroot", str(folder / "run"))

    def remove() -> None:
        subprocess.run(["buildah", *store, "rm", "--all"], capture_output=True, check=False, timeout=120)
        subprocess.run(["buildah", *store, "rmi", "--all", "--force"], capture_output=True, check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)

    stack.add_cleanup(remove)
    return store


def test_the_release_archive_loads_into_an_empty_store_and_runs_a_cascade(
    stack: Stack, released: tuple[Path, Path], empty_store: tuple[str, ...], shared: Path
) -> None:
    """The OCI archive `make dist` writes, pulled into an empty store (`buildah pull oci-archive:`), is the image
    named airflow-etcd-coordinator-watcher:VERSION with its user, entrypoint and version label, and `coordinator
    watch` run from it triggers 02..07 once each after 01 succeeds."""
    archive, _ = released
    assert archive.name == f"airflow-etcd-coordinator-watcher-{coordinator.__version__}.tar"

    def buildah_in_store(*args: str) -> str:
        done = subprocess.run(["buildah", *empty_store, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    buildah_in_store("pull", "--quiet", f"oci-archive:{archive}")
    name = f"localhost/airflow-etcd-coordinator-watcher:{coordinator.__version__}"
    config = json.loads(buildah_in_store("inspect", "--type", "image", name))["OCIv1"]["config"]
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["coordinator"], config
    assert config["Labels"]["org.opencontainers.image.version"] == coordinator.__version__
    container = buildah_in_store("from", "--pull=never", name)
    stack.start_watcher("archive", command=buildah_run(container, shared, empty_store))
    partition = new_partition()
    stack.trigger_root(partition)
    stack.wait_success(LAST, partition)
    stack.settle()
    stack.assert_once(partition)
    assert [stack.fake.creates(dag) for dag in DOWNSTREAM] == [1] * len(DOWNSTREAM)


def test_the_sbom_lists_exactly_the_images_python_packages(released: tuple[Path, Path], rootfs: Path) -> None:
    """The SBOM `make dist` writes is CycloneDX JSON whose Python components are the distributions installed in the
    image's venv, each at its installed version (this package's at VERSION), and no Airflow."""
    _, sbom = released
    bom = json.loads(sbom.read_text(encoding="utf-8"))
    assert bom["bomFormat"] == "CycloneDX"
    python = [c for c in bom["components"] if c.get("purl", "pkg:pypi/").startswith("pkg:pypi/")]
    python = [c for c in python if c["type"] == "library"]
    listed = {c["name"].lower().replace("_", "-"): c["version"] for c in python}
    site = next((rootfs / VENV.lstrip("/") / "lib").glob("python3.*/site-packages"))
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
    assert listed == installed
    assert listed["airflow-etcd-coordinator"] == coordinator.__version__
    assert not any(name.startswith("apache-airflow") for name in listed)


def test_the_sbom_validates_names_the_image_digest_and_lists_its_debian_packages(
    released: tuple[Path, Path], rootfs: Path
) -> None:
    """The SBOM passes CycloneDX's strict schema validator, has a urn:uuid serial number, names the image with the
    manifest digest its OCI archive holds, and lists exactly the Debian packages of the image's dpkg database
    (var/lib/dpkg/status.d, counted here), each as pkg:deb/debian/NAME@VERSION with its architecture."""
    archive, path = released
    assert sbom.validate(path, tool_venv.python(tool_venv.ensure_tool(tool_venv.SBOM))) is None
    bom = json.loads(path.read_text(encoding="utf-8"))
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", bom["serialNumber"]), bom["serialNumber"]
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("index.json"))["manifests"]  # type: ignore[arg-type]
    image = bom["metadata"]["component"]
    assert (image["type"], image["name"], image["version"]) == ("container", dist.WATCHER, coordinator.__version__)
    assert image["hashes"] == [{"alg": "SHA-256", "content": manifest["digest"].removeprefix("sha256:")}]
    assert image["purl"].startswith(f"pkg:oci/{dist.WATCHER}@{manifest['digest'].replace(':', '%3A')}?")
    held = {}
    for status in (rootfs / "var" / "lib" / "dpkg" / "status.d").iterdir():
        fields = dict(re.findall(r"^(Package|Version|Architecture): (.+)$", status.read_text(), flags=re.MULTILINE))
        held[fields["Package"]] = (fields["Version"], fields["Architecture"])
    debs = {c["name"]: c for c in bom["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert len(debs) == len(held) > 20, (len(debs), len(held))
    assert {name: c["version"] for name, c in debs.items()} == {name: v for name, (v, _) in held.items()}
    for name, component in debs.items():
        version, arch = held[name]
        assert component["purl"].startswith(f"pkg:deb/debian/{quote(name)}@{quote(version, safe='')}?arch={arch}&")
    assert {"libssl3", "libc6", "python3.11-minimal", "libpython3.11-stdlib"} <= set(debs), sorted(debs)
