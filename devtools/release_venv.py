"""The environment a platform team builds from a release: a fresh venv with the released wheel (``make dist``) and
Airflow 3.3, pinned by ``constraints/dev.txt``, for the tests that install what users install
(tests/test_release.py, tests/e2e/test_readme_e2e.py).

Rules:
1. One venv per wheel: its folder is named after the wheel's SHA-256, under a root the caller gives (a test
   session's shared temporary folder), so the tests of one session that hold the same wheel bytes (``make dist`` is
   reproducible) pay the install once, whichever xdist worker comes first.
2. A file lock beside the venv keeps two processes from building it at once: the second waits, then reuses it. A venv
   is current only once its stamp (the wheel's hash) is written after pip succeeded: a half-built one is rebuilt.
3. Nothing of this checkout leaks in: the wheel is installed by file (never editable) and pip runs outside the
   checkout, so ``import coordinator`` in that venv is the wheel's code.
4. Nothing waits forever: the venv, pip and the wait for another process's build have timeouts; a failed pip raises
   :class:`ReleaseVenvError` with the end of its output.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints" / "dev.txt"
STAMP = ".wheel-sha256"
#: pip resolves and installs Airflow 3.3 with its providers: a few minutes on a loaded machine, never 15.
INSTALL_TIMEOUT_S = 900.0
_OUTPUT_TAIL_CHARS = 3000


class ReleaseVenvError(RuntimeError):
    """The venv could not be built (pip failed or timed out, or another process held the lock too long)."""


def wheel_hash(wheel: Path) -> str:
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def bin_dir(venv: Path) -> Path:
    return venv / "bin"


def ensure(wheel: Path, root: Path, timeout_s: float = INSTALL_TIMEOUT_S) -> Path:
    """The venv (its folder) holding ``wheel`` with the ``airflow`` extra, built now under ``root`` unless a current
    one is there (rule 1)."""
    digest = wheel_hash(wheel)
    venv = root / f"release-venv-{digest[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    with venv.with_name(venv.name + ".lock").open("a") as lock:
        _lock(lock.fileno(), timeout_s + 120.0, venv)
        stamp = venv / STAMP
        if stamp.is_file() and stamp.read_text(encoding="utf-8") == digest:
            return venv
        begin = time.monotonic()
        log.info("release_venv.build venv=%s wheel=%s", venv, wheel.name)
        _install(venv, wheel, timeout_s)
        stamp.write_text(digest, encoding="utf-8")
        log.info("release_venv.built venv=%s seconds=%.1f", venv, time.monotonic() - begin)
    return venv


def _lock(fd: int, timeout_s: float, venv: Path) -> None:
    """Take the lock, polling: another process's build ends within its own pip timeout, so the wait is bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise ReleaseVenvError(f"another process kept {venv}.lock for {timeout_s:.0f} s") from None
            time.sleep(1.0)


def _install(venv: Path, wheel: Path, timeout_s: float) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    pip = [str(bin_dir(venv) / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    command = [*pip, "install", "--constraint", str(CONSTRAINTS), f"{wheel}[airflow]"]
    try:
        # From the venv's folder: a pyproject.toml in the working directory must not matter.
        done = subprocess.run(command, cwd=venv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ReleaseVenvError(f"pip install of {wheel.name} into {venv} took more than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise ReleaseVenvError(
            f"pip install of {wheel.name} into {venv} exited {done.returncode}:\n"
            + (done.stdout + done.stderr)[-_OUTPUT_TAIL_CHARS:]
        )
