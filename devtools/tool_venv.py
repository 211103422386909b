"""Pinned venvs for developer tools that must stay out of the dev venv: ``ROOT/.venv-NAME``, pinned by
``constraints/NAME.txt``, built on first use.

    python -m devtools.tool_venv venv sbom    # build or reuse .venv-sbom
    python -m devtools.tool_venv lock sbom    # re-pin constraints/sbom.txt (a fresh venv, then pip freeze)
    python -m devtools.tool_venv venv release # build or reuse .venv-release, what `make dist` runs in

Why a venv of its own: whatever sits in ``.venv`` is imported by every Airflow process the tests start when a
library looks for it. ``cyclonedx-bom`` pulls ``jsonschema[format-nongpl]``, whose ``rfc3987-syntax`` builds a lark
grammar when jsonschema is imported (and Airflow imports jsonschema): ``import airflow`` cost twice the CPU with it
installed. Only ``make dist`` needs it, so it lives in ``.venv-sbom``. ``make dist`` itself runs in ``.venv-release``:
PyPA's ``build`` and ``twine``, nothing else, so a release needs neither Airflow nor the rest of the dev venv.

Rules (``devtools/dbt_stack.py``'s ``.venv-dbt`` is built by them too):
1. The venv is rebuilt only when its fingerprint changed: the pins' text, the requirements installed under them and
   the Python minor version. The fingerprint is written last, so a half-built venv never looks current.
2. Two processes never build it at once: ``.build.lock`` (flock) inside the venv folder makes the second wait, then
   reuse. The lock and a ``.gitignore`` (``*``) survive a rebuild, so git never sees the venv.
3. Nothing waits forever: venv creation and pip have timeouts; a failed step raises :class:`ToolVenvError` with the
   end of its output.

This module imports only the standard library, so any Python 3.11 can run it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
FINGERPRINT_FILE = ".fingerprint"
LOCK_FILE = ".build.lock"
_KEEP_ON_REBUILD = frozenset({LOCK_FILE, ".gitignore"})
# A cold install of cyclonedx-bom downloads ~35 small packages (seconds with a warm pip cache); 15 min only fails a
# hung index.
INSTALL_TIMEOUT_S = 900.0
_OUTPUT_TAIL_CHARS = 3000


class ToolVenvError(RuntimeError):
    """A tool venv could not be built or locked (the message carries the tail of the failing command's output)."""


@dataclass(frozen=True)
class Tool:
    """A developer tool with a venv of its own: ``.venv-{name}`` pinned by ``constraints/{name}.txt``."""

    name: str
    #: What the venv installs under the pins.
    requirements: tuple[str, ...]
    #: What ``lock`` resolves into the pins (the versions chosen on purpose; the rest follows).
    lock_requirements: tuple[str, ...]
    #: The venv's ``bin/`` programs the tool is run as: a venv without one of them is not current (nor built).
    executables: tuple[str, ...] = ()

    def venv(self, root: Path = REPO) -> Path:
        return root / f".venv-{self.name}"

    def constraints(self, root: Path = REPO) -> Path:
        return root / "constraints" / f"{self.name}.txt"


#: CycloneDX's generator for the image's SBOM (devtools/dist.py): ``python -m cyclonedx_py environment``.
SBOM = Tool("sbom", requirements=("cyclonedx-bom",), lock_requirements=("cyclonedx-bom==7.5.0",))
#: What ``make dist`` runs in (``python -m devtools.dist``, which imports only the standard library and the
#: checkout): PyPA's builder for the wheel and the sdist, and twine's strict metadata check. The chart is packaged with
#: ``tarfile`` (no helm); the image and the SBOM use buildah and ``.venv-sbom``.
RELEASE = Tool("release", requirements=("build", "twine"), lock_requirements=("build==1.6.1", "twine==7.0.0"))
TOOLS = {tool.name: tool for tool in (SBOM, RELEASE)}


def python(venv: Path) -> Path:
    """The venv's interpreter, the one to run the tool with (``python -m module``)."""
    return venv / "bin" / "python"


def fingerprint(requirements: Sequence[str], constraints: Path) -> str:
    """What a venv was built from: the pins' text, the requirements installed under them, the Python minor version."""
    material = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "requirements": list(requirements),
        "constraints": constraints.read_text(encoding="utf-8"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _run(args: Sequence[str], what: str, timeout_s: float = INSTALL_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolVenvError(f"{what} timed out after {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-_OUTPUT_TAIL_CHARS:]
        raise ToolVenvError(f"{what} failed with exit code {done.returncode}:\n{output}")
    return done.stdout


def _install(
    venv: Path,
    requirements: Sequence[str],
    constraints: Path | None,
    pip_options: Sequence[str],
    executables: Sequence[str] = (),
) -> None:
    """Create the venv in ``venv`` (which may hold only the lock and .gitignore) and install ``requirements``; every
    one of ``executables`` must then be in its ``bin/``."""
    _run([sys.executable, "-m", "venv", str(venv)], f"creating {venv}", timeout_s=120.0)
    pins = ["--constraint", str(constraints)] if constraints is not None else []
    interpreter = str(python(venv))
    _run(
        [interpreter, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_options, *pins,
         *requirements],
        f"installing {' '.join(requirements)} into {venv}",
    )  # fmt: skip
    _run([interpreter, "-m", "pip", "check", "--disable-pip-version-check"], f"pip check of {venv}", timeout_s=120.0)
    for name in executables:
        if not (venv / "bin" / name).exists():
            raise ToolVenvError(f"{venv / 'bin' / name} missing after the install")


def _empty_but_lock(venv: Path) -> None:
    """Remove the venv's content except the lock (held by us) and .gitignore: a rebuild starts from nothing."""
    for child in venv.iterdir():
        if child.name in _KEEP_ON_REBUILD:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def ensure(
    root: Path,
    name: str,
    requirements: Sequence[str],
    constraints: Path,
    *,
    pip_options: Sequence[str] = (),
    executables: Sequence[str] = (),
) -> Path:
    """The venv ``root/.venv-{name}`` with ``requirements`` installed under ``constraints``, built now unless its
    fingerprint is current and it has its ``executables``. ``pip_options`` go to ``pip install`` (a wheelhouse:
    ``--no-index --find-links DIR``)."""
    venv = root.resolve() / f".venv-{name}"
    wanted = fingerprint(requirements, constraints)
    venv.mkdir(parents=True, exist_ok=True)
    gitignore = venv / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# made by devtools/tool_venv.py: git ignores the whole venv\n*\n", encoding="utf-8")
    with (venv / LOCK_FILE).open("a") as lock_file:
        # Two test processes (or make and pytest) must not build the same venv at once: the second waits, then reuses.
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        stamp = venv / FINGERPRINT_FILE
        present = all((venv / "bin" / program).exists() for program in ("python", *executables))
        if present and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
            return venv
        begin = time.monotonic()
        log.info("tool_venv.build name=%s venv=%s constraints=%s", name, venv, constraints)
        with contextlib.suppress(FileNotFoundError):
            stamp.unlink()  # a half-built venv must never look current
        _empty_but_lock(venv)
        _install(venv, requirements, constraints, pip_options, executables)
        stamp.write_text(wanted, encoding="utf-8")
        log.info("tool_venv.built name=%s venv=%s seconds=%.1f", name, venv, time.monotonic() - begin)
        return venv


def ensure_tool(tool: Tool, root: Path = REPO) -> Path:
    """:func:`ensure` for one of :data:`TOOLS`, pinned by its ``constraints/{name}.txt``."""
    return ensure(root, tool.name, tool.requirements, tool.constraints(root), executables=tool.executables)


def lock(tool: Tool, root: Path = REPO, *, under: Path | None = None) -> Path:
    """Install the tool's ``lock_requirements`` into a scratch venv and write its ``pip freeze`` as the pins.
    ``under``: resolve under those constraints instead of the newest releases (to keep the versions another venv
    already has)."""
    target = tool.constraints(root)
    with tempfile.TemporaryDirectory(prefix=f"{tool.name}-lock-") as scratch:
        venv = Path(scratch) / "venv"
        venv.mkdir()
        _install(venv, tool.lock_requirements, under, pip_options=())
        interpreter = str(python(venv))
        frozen = _run([interpreter, "-m", "pip", "freeze", "--disable-pip-version-check"], "pip freeze", 120.0)
        version = _run([interpreter, "-c", "import platform; print(platform.python_version())"], "python version")
    header = (
        f"# Pins for the {tool.name} tool venv (.venv-{tool.name}/, devtools/tool_venv.py), Python {version.strip()}.\n"
        f"# Regenerate: make lock-{tool.name} "
        f"(a fresh venv with {' '.join(tool.lock_requirements)}, then pip freeze).\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + frozen, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """``venv NAME``: build or reuse ``.venv-NAME``; ``lock NAME``: re-pin ``constraints/NAME.txt``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(args) == 2 and args[0] in ("venv", "lock") and args[1] in TOOLS:
        tool = TOOLS[args[1]]
        if args[0] == "venv":
            begin = time.monotonic()
            venv = ensure_tool(tool)
            log.info("tool_venv.ready name=%s venv=%s seconds=%.1f", tool.name, venv, time.monotonic() - begin)
        else:
            path = lock(tool)
            log.info("tool_venv.locked name=%s path=%s (review the diff; rebuilt on next use)", tool.name, path)
        return 0
    log.error("usage: python -m devtools.tool_venv {venv|lock} {%s}", "|".join(TOOLS))
    return 2


if __name__ == "__main__":
    sys.exit(main())
