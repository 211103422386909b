"""Build the watcher image (docker/watcher.Containerfile) without a Docker daemon: ``make image``.

Debian's ``buildah`` builds it with chroot isolation (no daemon, no user namespaces) on overlay storage where this
kernel lets buildah mount it, and on vfs storage otherwise (:func:`storage`). No container registry is reachable
from the build machines, so the base, ``debian:bookworm-slim``, is made here once from Debian's own packages with
``debootstrap --variant=minbase``, trimmed the way the official slim image is (no docs, man pages or locales; dpkg
told to keep them out), and stored under the base's own name: the same Containerfile then builds here and, with
``docker build`` or ``podman build``, anywhere the real base can be pulled. The base is made only when the store
does not hold it.

    python -m devtools.image build [--tag T]   # base if missing, then the image; prints its size beside the target
    python -m devtools.image size [--tag T]
    python -m devtools.image base [--force]    # (re)make only the base

Every buildah call names the storage driver (:func:`storage`), so a machine whose containers/storage.conf says
otherwise still works; ``STORAGE_DRIVER=vfs`` (buildah's own variable) chooses one.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTAINERFILE = REPO / "docker" / "watcher.Containerfile"
IGNOREFILE = REPO / "docker" / "watcher.Containerfile.dockerignore"
BASE = "docker.io/library/debian:bookworm-slim"
SUITE = "bookworm"
IMAGE = "localhost/airflow-etcd-coordinator-watcher"
#: The size the image must stay under, uncompressed (issue 33): the package and its dependencies on a slim Debian.
TARGET_MB = 150
#: The storage drivers :func:`storage` chooses from, best first.
DRIVERS = ("overlay", "vfs")
#: What Debian's slim images leave out (docker-library/debian's slimify list, as dpkg path excludes): docs but their
#: copyright files, man and info pages, locales but the C one.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


class ImageError(RuntimeError):
    """A tool is missing or a build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Built:
    tag: str
    size_bytes: int

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1_000_000


def say(text: str, *, error: bool = False) -> None:
    """One progress or result line (``make image`` shows them as they come)."""
    stream = sys.stderr if error else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def version() -> str:
    """The package's version, from its one source (coordinator/__init__.py, which pyproject.toml reads too)."""
    from coordinator import __version__

    return __version__


def default_tag() -> str:
    return f"{IMAGE}:{version()}"


def missing_tools() -> list[str]:
    """The Debian packages this needs that are not on PATH (buildah, debootstrap)."""
    return [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]


#: The complete command that installs what :func:`missing_tools` names, on Debian or Ubuntu.
INSTALL_COMMAND = "sudo apt-get update && sudo apt-get install -y buildah debootstrap"


def require_tools() -> None:
    """Refuse to start without buildah and debootstrap, saying the command that installs them. Nothing is installed
    here: building an image must not change the host (``make pytest``'s ``buildah`` target installs them for the
    test suite, as it does Chromium and PostgreSQL)."""
    missing = missing_tools()
    if missing:
        raise ImageError(
            f"{' and '.join(missing)} not found: the watcher image is built with Debian's buildah from a base made "
            f"with debootstrap. Install them (Debian or Ubuntu): {INSTALL_COMMAND}"
        )


@functools.cache
def storage() -> tuple[str, ...]:
    """The storage options of every buildah call here: ``STORAGE_DRIVER`` when set, else overlay if buildah can mount
    an overlay container on this kernel, else vfs.

    Why overlay first: its layers are copy-on-write. vfs copies the whole tree for every step, so on a 2-core machine
    an image build with every step cached took 47-68 s and a rebuild that changed one label 110 s; on overlay the
    same rebuild took 4 s. vfs still works where overlay cannot mount (some containers, no kernel module). Each
    driver keeps its own images in the same store, so switching makes the base again once.
    """
    chosen = os.environ.get("STORAGE_DRIVER", "").strip()
    if chosen:
        return ("--storage-driver", chosen)
    probe = ["buildah", "--storage-driver", DRIVERS[0]]
    made = subprocess.run([*probe, "from", "scratch"], capture_output=True, text=True)
    if made.returncode == 0:
        container = made.stdout.strip()
        mounted = subprocess.run([*probe, "mount", container], capture_output=True, text=True)
        subprocess.run([*probe, "rm", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mounted.returncode == 0:
            return ("--storage-driver", DRIVERS[0])
    return ("--storage-driver", DRIVERS[1])


def buildah(*args: str, capture: bool = False) -> str:
    """Run ``buildah <storage options> ARGS``; raise ImageError with its stderr when it fails."""
    cmd = ["buildah", *storage(), *args]
    result = subprocess.run(cmd, text=True, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout if capture else ""


def discard(container: str) -> None:
    """Remove a working container, quietly (cleanup after an error must not hide the error)."""
    subprocess.run(["buildah", *storage(), "rm", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def has_image(name: str) -> bool:
    cmd = ["buildah", *storage(), "inspect", "--type", "image", name]
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), so debootstrap goes where apt may go."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def slim(rootfs: Path, mirror: str) -> None:
    """Trim a minbase rootfs the way debian:bookworm-slim is: dpkg excludes, no docs or caches, apt sources set."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES, encoding="utf-8")
    for pattern in ("usr/share/man/*", "usr/share/groff/*", "usr/share/info/*", "usr/share/lintian/*",
                    "usr/share/linda/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                    "var/lib/apt/lists/*", "var/log/*.log", "var/log/apt/*"):  # fmt: skip
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    for path in (rootfs / "usr/share/doc").glob("*/*"):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in (rootfs / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    security = mirror.rstrip("/").rsplit("/", 1)[0] + "/debian-security"
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        encoding="utf-8",
    )
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)


def make_base(force: bool = False) -> None:
    """debootstrap bookworm (minbase), slim it, store it as debian:bookworm-slim. Skipped when the store has it."""
    if has_image(BASE) and not force:
        say(f">> base {BASE} already in the store")
        return
    mirror = debian_mirror()
    say(f">> making {BASE} with debootstrap from {mirror} (~30 s)")
    with tempfile.TemporaryDirectory(prefix="coordinator-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
                                text=True, capture_output=True)  # fmt: skip
        if result.returncode != 0:
            raise ImageError(f"debootstrap exited {result.returncode}: {result.stdout[-1500:]}{result.stderr[-500:]}")
        slim(rootfs, mirror)
        container = buildah("from", "scratch", capture=True).strip()
        try:
            mount = Path(buildah("mount", container, capture=True).strip())
            # tar keeps owners, modes, links and device nodes exactly (buildah copy would chown everything).
            pack = subprocess.Popen(["tar", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE)
            unpack = subprocess.run(["tar", "-C", str(mount), "-xf", "-"], stdin=pack.stdout)
            if pack.wait() != 0 or unpack.returncode != 0:
                raise ImageError("copying the debootstrapped rootfs into the base container failed")
            buildah("umount", container, capture=True)
            buildah("config", "--cmd", "bash", "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", container)  # fmt: skip
            buildah("commit", "--quiet", "--format", "docker", container, BASE, capture=True)
        finally:
            discard(container)


def revision() -> str:
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def pip_ca_bundle() -> Path | None:
    """The CA bundle the host's pip trusts (PIP_CERT, else SSL_CERT_FILE), for a build behind a TLS-inspecting proxy:
    handed to the build stage as the secret ``pip-ca``, which never lands in a layer."""
    for name in ("PIP_CERT", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value and Path(value).is_file():
            return Path(value)
    return None


def build(tag: str | None = None, extras: str = "") -> Built:
    """The base if missing, then the watcher image from the repository root, with the package's ``extras`` (e.g.
    "google", for Cloud Composer's auth method; the tag gets them as a suffix); returns its tag and size."""
    tag = tag or default_tag() + (f"-{extras.replace(',', '-')}" if extras else "")
    require_tools()
    make_base()
    say(f">> building {tag} from {CONTAINERFILE.relative_to(REPO)} with buildah (chroot, {storage()[-1]})")
    ca = pip_ca_bundle()
    secret = ["--secret", f"id=pip-ca,src={ca}"] if ca is not None else []
    # The build args set the labels for `docker build`; --label sets them again on the final commit here, because
    # buildah's layer cache (1.28, Debian's) keys a LABEL step on its text before the args are substituted: a store
    # that built an earlier commit handed back that commit's revision label.
    stamps = {"org.opencontainers.image.version": version(), "org.opencontainers.image.revision": revision()}
    buildah("bud", "--isolation", "chroot", "--format", "docker", "--pull=never", "--layers", *secret,
            "--ignorefile", str(IGNOREFILE), "-f", str(CONTAINERFILE),
            "--build-arg", f"VERSION={version()}", "--build-arg", f"REVISION={revision()}",
            "--build-arg", f"EXTRAS={extras}",
            *(arg for name, value in stamps.items() for arg in ("--label", f"{name}={value}")),
            "-t", tag, str(REPO))  # fmt: skip
    return Built(tag, image_size(tag))


def image_size(tag: str) -> int:
    """The image's uncompressed size in bytes: its root filesystem unpacked (``du``), what a node stores."""
    if not has_image(tag):
        raise ImageError(f"{tag} is not in the store: run `make image`")
    container = buildah("from", "--pull=never", tag, capture=True).strip()
    try:
        mount = buildah("mount", container, capture=True).strip()
        du = subprocess.run(["du", "-sb", mount], capture_output=True, text=True, check=True)
        return int(du.stdout.split()[0])
    finally:
        discard(container)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "size"):
        sub.add_parser(name).add_argument("--tag", default=None, help=f"default {default_tag()}")
    sub.choices["build"].add_argument("--extras", default="", help="the package's extras: google, aws")
    sub.add_parser("base").add_argument("--force", action="store_true", help="make it again even if stored")
    args = parser.parse_args(argv)
    try:
        if args.command == "base":
            require_tools()
            make_base(force=args.force)
            return 0
        built = build(args.tag, args.extras) if args.command == "build" else Built(args.tag or default_tag(), 0)
        size = built.size_bytes or image_size(built.tag)
        verdict = "under" if size < TARGET_MB * 1_000_000 else "OVER"
        say(f">> {built.tag}: {size / 1_000_000:.1f} MB uncompressed, {verdict} the {TARGET_MB} MB target")
        return 0 if verdict == "under" else 1
    except (ImageError, subprocess.CalledProcessError) as exc:
        say(f"image: {exc}", error=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
