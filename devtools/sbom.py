"""The watcher image's SBOM in the shape a scanner (Dependency-Track, Trivy, Grype) needs, around what CycloneDX's own
generator writes.

``cyclonedx-py environment`` (devtools/dist.py runs it from ``.venv-sbom``) lists the image's Python distributions.
It cannot know the rest, which :func:`complete` adds:

- ``metadata.component``: the image itself (type ``container``): its name, version, and the digest of its OCI
  manifest as buildah wrote it, in a ``pkg:oci`` purl and as the component's SHA-256 hash, so a scanner ties the
  findings to the image a registry serves;
- ``serialNumber``: a new ``urn:uuid`` each time (CycloneDX: unique per BOM even when its content is unchanged);
- the operating system (``operating-system``, Debian and its point release) and every Debian package the image's
  dpkg database lists (``var/lib/dpkg/status``, and ``status.d/``, one file per package, which is what distroless
  images and this one carry) as ``pkg:deb/debian/NAME@VERSION?arch=...&distro=debian-X.Y`` components, with the
  source package as the ``upstream`` qualifier where it differs (Debian's security tracker files advisories by source
  package);
- the dependency graph's two new edges: the image on the operating system and the ``airflow-etcd-coordinator``
  distribution, the operating system on its packages.

:func:`validate` checks the result against CycloneDX's JSON schema with ``cyclonedx-python-lib``'s strict validator,
run from the same pinned venv as the generator. Standard library only here: the dev venv never imports CycloneDX.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: The project's own distribution among the Python components (what the image runs).
PACKAGE = "airflow-etcd-coordinator"
#: Run in the generator's venv: strict schema validation of the file argv[1], the error on stdout, exit 1 if invalid.
_VALIDATE = """
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
text = open(sys.argv[1], encoding="utf-8").read()
version = SchemaVersion.from_version(json.loads(text)["specVersion"])
error = JsonStrictValidator(version).validate_str(text)
if error is not None:
    print(error)
    sys.exit(1)
"""


@dataclass(frozen=True)
class DebPackage:
    """One installed Debian package as dpkg records it."""

    name: str
    version: str
    arch: str
    source: str  # the source package's name, the binary's own when dpkg names none
    source_version: str  # the source's version when it differs from the binary's (binNMUs), else the binary's


def stanzas(text: str) -> list[dict[str, str]]:
    """The paragraphs of a dpkg status file as field -> value (continuation lines kept, folded into the value)."""
    found: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += "\n" + line.strip()
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if fields:
            found.append(fields)
    return found


def _package(fields: dict[str, str]) -> DebPackage:
    source, version = fields.get("Source", fields["Package"]), fields["Version"]
    match = re.fullmatch(r"(\S+)\s+\((\S+)\)", source)
    name, source_version = (match.group(1), match.group(2)) if match else (source, version)
    return DebPackage(fields["Package"], version, fields.get("Architecture", ""), name, source_version)


def dpkg_packages(root: Path) -> list[DebPackage]:
    """Every package the root filesystem's dpkg database says is installed, by name: ``var/lib/dpkg/status`` and
    the files of ``var/lib/dpkg/status.d/`` (only paragraphs whose ``Status`` ends in ``installed``, or that have no
    ``Status``, as in some distroless files)."""
    database = root / "var" / "lib" / "dpkg"
    files = [database / "status", *sorted((database / "status.d").glob("*"))]
    packages: dict[tuple[str, str], DebPackage] = {}
    for file in files:
        if not file.is_file() or file.name.endswith(".md5sums"):
            continue
        for fields in stanzas(file.read_text(encoding="utf-8", errors="replace")):
            if "Package" not in fields or "Version" not in fields:
                continue
            if fields.get("Status", "install ok installed").split()[-1] != "installed":
                continue
            package = _package(fields)
            packages[(package.name, package.arch)] = package
    return sorted(packages.values(), key=lambda p: (p.name, p.arch))


def debian_release(root: Path) -> str:
    """The root filesystem's Debian point release (``etc/debian_version``, e.g. 12.15), else os-release's
    VERSION_ID."""
    version = root / "etc" / "debian_version"
    if version.is_file() and re.fullmatch(r"\d+(\.\d+)*", version.read_text(encoding="utf-8").strip()):
        return version.read_text(encoding="utf-8").strip()
    return os_release(root).get("VERSION_ID", "")


def os_release(root: Path) -> dict[str, str]:
    """``etc/os-release`` (or ``usr/lib/os-release``) as a mapping, quotes removed."""
    for path in (root / "etc" / "os-release", root / "usr" / "lib" / "os-release"):
        if path.is_file():
            pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines() if "=" in line)
            return {key: value.strip().strip('"') for key, value in pairs}
    return {}


def deb_purl(package: DebPackage, release: str) -> str:
    """The package's purl as the purl spec writes Debian's: version percent-encoded (an epoch's ``:``, ``+``),
    qualifiers in sorted order."""
    qualifiers = {"arch": package.arch, "distro": f"debian-{release}"}
    if package.source != package.name or package.source_version != package.version:
        upstream = (
            package.source
            if package.source_version == package.version
            else (f"{package.source}@{package.source_version}")
        )
        qualifiers["upstream"] = upstream
    query = "&".join(f"{key}={quote(value, safe='')}" for key, value in sorted(qualifiers.items()) if value)
    return f"pkg:deb/debian/{quote(package.name, safe='')}@{quote(package.version, safe='')}?{query}"


def image_purl(name: str, digest: str, arch: str, tag: str) -> str:
    """The image's ``pkg:oci`` purl: the manifest digest is the version; the tag and architecture are qualifiers."""
    qualifiers = f"arch={quote(arch, safe='')}&tag={quote(tag, safe='')}"
    return f"pkg:oci/{quote(name, safe='')}@{quote(digest, safe='')}?{qualifiers}"


def complete(bom: dict[str, Any], *, name: str, version: str, digest: str, arch: str, root: Path) -> dict[str, Any]:
    """``bom`` (cyclonedx-py's, of the image's venv) with the image, a serial number, the operating system and the
    image's Debian packages added (see the module's docstring). ``root`` is the image's root filesystem."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise ValueError(f"not an OCI sha256 digest: {digest!r}")
    release = debian_release(root)
    packages = dpkg_packages(root)
    if not packages:
        raise ValueError(f"{root}: no installed package in var/lib/dpkg/status or status.d/: nothing for a scanner")
    image_ref = image_purl(name, digest, arch, version)
    os_ref = f"os:debian@{release}"
    result = dict(bom)
    result["serialNumber"] = f"urn:uuid:{uuid.uuid4()}"
    metadata = dict(result.get("metadata", {}))
    # cyclonedx-py's "cdx:reproducible" no longer holds: the serial number is new each time.
    kept = [p for p in metadata.get("properties", []) if p.get("name") != "cdx:reproducible"]
    if kept:
        metadata["properties"] = kept
    else:
        metadata.pop("properties", None)
    metadata["component"] = {
        "type": "container",
        "bom-ref": image_ref,
        "name": name,
        "version": version,
        "description": "The coordinator's watcher image (OCI), its manifest digest as purl version and hash",
        "purl": image_ref,
        "hashes": [{"alg": "SHA-256", "content": hexdigest}],
    }
    result["metadata"] = metadata
    pretty = os_release(root).get("PRETTY_NAME", f"Debian {release}")
    debs = [
        {"type": "library", "bom-ref": deb_purl(p, release), "name": p.name, "version": p.version,
         "purl": deb_purl(p, release)}
        for p in packages
    ]  # fmt: skip
    system = {"type": "operating-system", "bom-ref": os_ref, "name": "debian", "version": release,
              "description": pretty}  # fmt: skip
    result["components"] = [*bom.get("components", []), system, *debs]
    python_ref = next((c["bom-ref"] for c in bom.get("components", []) if c.get("name") == PACKAGE), None)
    edges = [{"ref": image_ref, "dependsOn": [os_ref, *([python_ref] if python_ref else [])]},
             {"ref": os_ref, "dependsOn": [d["bom-ref"] for d in debs]},
             *({"ref": d["bom-ref"]} for d in debs)]  # fmt: skip
    result["dependencies"] = [*bom.get("dependencies", []), *edges]
    return result


def validate(path: Path, interpreter: Path) -> str | None:
    """None when ``path`` is valid CycloneDX JSON of its ``specVersion`` (cyclonedx-python-lib's strict validator,
    run by ``interpreter``, the generator's venv), else the validator's message."""
    done = subprocess.run([str(interpreter), "-c", _VALIDATE, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    if done.returncode == 0:
        return None
    return (done.stdout + done.stderr).strip() or f"the validator exited {done.returncode}"


def write(path: Path, bom: dict[str, Any]) -> None:
    path.write_text(json.dumps(bom, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
