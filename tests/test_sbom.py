"""The image SBOM's completion (devtools/sbom.py) on a root filesystem laid out as Debian's: the dpkg database read as
dpkg writes it (``status`` and distroless' ``status.d/``), Debian purls as the purl spec encodes them, and the
completed SBOM accepted by CycloneDX's own strict validator. The real image's SBOM is checked against the real image
in tests/scenario/test_watcher_image.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devtools import sbom, tool_venv

DIGEST = "sha256:" + "ab" * 32
SERIAL = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
BZIP2 = "pkg:deb/debian/libbz2-1.0@1.0.8-5%2Bb1?arch=amd64&distro=debian-12.15&upstream=bzip2%401.0.8-5"
#: A status file as dpkg writes it: an installed package, one removed with its configuration kept, a binNMU whose
#: source has another version, a description running over several lines.
STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u14
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1

Package: libbz2-1.0
Status: install ok installed
Architecture: amd64
Source: bzip2 (1.0.8-5)
Version: 1.0.8-5+b1
"""
#: A distroless status.d file: one package per file, an epoch in its version.
ZLIB = """Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A root filesystem with a dpkg database in both layouts, Debian 12.15's version files."""
    root = tmp_path / "root"
    database = root / "var" / "lib" / "dpkg"
    (database / "status.d").mkdir(parents=True)
    (database / "status").write_text(STATUS, encoding="utf-8")
    (database / "status.d" / "zlib1g").write_text(ZLIB, encoding="utf-8")
    (database / "status.d" / "zlib1g.md5sums").write_text("0123  usr/lib/libz.so.1\n", encoding="utf-8")
    (root / "etc").mkdir()
    (root / "etc" / "debian_version").write_text("12.15\n", encoding="utf-8")
    (root / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\n')
    return root


def python_bom() -> dict[str, Any]:
    """What cyclonedx-py environment writes for a venv holding the package, reduced to what completion reads."""
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {"properties": [{"name": "cdx:reproducible", "value": "true"}]},
        "components": [
            {"type": "library", "bom-ref": "airflow-etcd-coordinator==0.1.0", "name": "airflow-etcd-coordinator",
             "version": "0.1.0"},
            {"type": "library", "bom-ref": "httpx==0.28.1", "name": "httpx", "version": "0.28.1",
             "purl": "pkg:pypi/httpx@0.28.1"},
        ],
        "dependencies": [{"ref": "airflow-etcd-coordinator==0.1.0", "dependsOn": ["httpx==0.28.1"]},
                         {"ref": "httpx==0.28.1"}],
    }  # fmt: skip


def test_the_dpkg_database_gives_the_installed_packages_of_both_layouts(rootfs: Path) -> None:
    """Installed packages come from status and status.d/ (md5sums files skipped), a removed one does not, and a
    binNMU keeps its source's own version."""
    found = {p.name: p for p in sbom.dpkg_packages(rootfs)}
    assert sorted(found) == ["libbz2-1.0", "libc6", "zlib1g"]
    assert (found["libc6"].source, found["libc6"].source_version) == ("glibc", "2.36-9+deb12u14")
    assert (found["libbz2-1.0"].source, found["libbz2-1.0"].source_version) == ("bzip2", "1.0.8-5")
    assert found["zlib1g"].version == "1:1.2.13.dfsg-1"


@pytest.mark.parametrize(
    ("name", "purl"),
    [
        ("libc6", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.15&upstream=glibc"),
        ("zlib1g", "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12.15&upstream=zlib"),
        (
            "libbz2-1.0",
            "pkg:deb/debian/libbz2-1.0@1.0.8-5%2Bb1?arch=amd64&distro=debian-12.15&upstream=bzip2%401.0.8-5",
        ),
    ],
    ids=["source-named", "epoch", "binnmu"],
)
def test_debian_purls_encode_the_version_and_name_the_source(rootfs: Path, name: str, purl: str) -> None:
    """A package's purl percent-encodes its version (an epoch's colon, a plus), carries arch and distro, and names
    its source package (with the source's version where it differs) as the upstream qualifier."""
    (package,) = [p for p in sbom.dpkg_packages(rootfs) if p.name == name]
    assert sbom.deb_purl(package, sbom.debian_release(rootfs)) == purl


def test_completion_names_the_image_its_digest_and_its_debian_packages(rootfs: Path) -> None:
    """The completed SBOM names the image as a container with its digest, has a urn:uuid serial number new each
    time, keeps the Python components and adds the operating system and one component per installed Debian package,
    with the image depending on the OS and the package, the OS on its packages."""
    first = sbom.complete(python_bom(), name="watcher", version="0.1.0", digest=DIGEST, arch="amd64", root=rootfs)
    second = sbom.complete(python_bom(), name="watcher", version="0.1.0", digest=DIGEST, arch="amd64", root=rootfs)
    assert re.fullmatch(
        r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", first["serialNumber"]
    )
    assert first["serialNumber"] != second["serialNumber"]
    image = first["metadata"]["component"]
    assert image["type"] == "container" and image["name"] == "watcher" and image["version"] == "0.1.0"
    assert image["purl"] == f"pkg:oci/watcher@sha256%3A{'ab' * 32}?arch=amd64&tag=0.1.0"
    assert image["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert "properties" not in first["metadata"], "cdx:reproducible no longer holds with a new serial number"
    kinds = [(c["type"], c["name"]) for c in first["components"]]
    assert kinds[:2] == [("library", "airflow-etcd-coordinator"), ("library", "httpx")]
    assert ("operating-system", "debian") in kinds
    debs = [c for c in first["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert [c["name"] for c in debs] == ["libbz2-1.0", "libc6", "zlib1g"]
    edges = {d["ref"]: d.get("dependsOn", []) for d in first["dependencies"]}
    assert edges[image["bom-ref"]] == ["os:debian@12.15", "airflow-etcd-coordinator==0.1.0"]
    assert edges["os:debian@12.15"] == [c["bom-ref"] for c in debs]


def test_an_image_without_a_dpkg_database_or_with_a_wrong_digest_is_refused(rootfs: Path, tmp_path: Path) -> None:
    """An SBOM that would list no OS package, or a digest that is not an OCI sha256, stops the release instead of
    shipping a BOM a scanner reads as "nothing installed"."""
    with pytest.raises(ValueError, match="no installed package"):
        sbom.complete(python_bom(), name="w", version="1", digest=DIGEST, arch="amd64", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="not an OCI sha256 digest"):
        sbom.complete(python_bom(), name="w", version="1", digest="latest", arch="amd64", root=rootfs)


@pytest.mark.install  # builds .venv-sbom on demand (pip) where make has not
def test_cyclonedx_validates_the_completed_sbom_and_refuses_a_broken_one(rootfs: Path, tmp_path: Path) -> None:
    """cyclonedx-python-lib's strict validator (in the pinned .venv-sbom) accepts the completed SBOM and refuses one
    whose serial number is not a urn:uuid, naming the field."""
    interpreter = tool_venv.python(tool_venv.ensure_tool(tool_venv.SBOM))
    done = sbom.complete(python_bom(), name="watcher", version="0.1.0", digest=DIGEST, arch="amd64", root=rootfs)
    good = tmp_path / "good.cdx.json"
    sbom.write(good, done)
    assert sbom.validate(good, interpreter) is None
    bad = tmp_path / "bad.cdx.json"
    bad.write_text(json.dumps({**done, "serialNumber": "42"}), encoding="utf-8")
    problem = sbom.validate(bad, interpreter)
    assert problem is not None and "serialNumber" in problem, problem
