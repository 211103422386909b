"""devtools/release_venv.py: one venv per wheel hash, built once even when several processes ask at the same time,
rebuilt when half-built, with a tiny real wheel and real pip (no Airflow: the `airflow` extra it asks for is absent)."""

from __future__ import annotations

import base64
import hashlib
import logging
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools import release_venv

#: Builds the package and installs it into fresh environments with pip (minutes): not in `make fast`.
pytestmark = pytest.mark.install


def tiny_wheel(folder: Path, body: str) -> Path:
    """A pure-Python wheel ``rvprobe-1.0`` whose module holds ``body`` (another body: other bytes, another hash)."""
    files = {
        "rvprobe.py": body.encode(),
        "rvprobe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: rvprobe\nVersion: 1.0\n",
        "rvprobe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files["rvprobe-1.0.dist-info/RECORD"] = ("\n".join([*record, "rvprobe-1.0.dist-info/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "rvprobe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)  # same body, same bytes
    return wheel


def probe(venv: Path) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", "import rvprobe; print(rvprobe.VALUE)"],
                          capture_output=True, text=True, timeout=60, check=True, cwd="/")  # fmt: skip
    return done.stdout.strip()


def builds(caplog: pytest.LogCaptureFixture) -> int:
    return sum(record.getMessage().startswith("release_venv.build ") for record in caplog.records)


def test_concurrent_callers_share_one_venv_built_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Three callers asking at once for the same wheel get the same venv, built once (the others wait on the lock),
    and the wheel's module imports there."""
    caplog.set_level(logging.INFO, logger="devtools.release_venv")
    wheel = tiny_wheel(tmp_path / "dist", "VALUE = 'one'\n")
    with ThreadPoolExecutor(3) as pool:
        venvs = list(pool.map(lambda _: release_venv.ensure(wheel, tmp_path / "venvs", timeout_s=300), range(3)))
    assert len(set(venvs)) == 1, venvs
    assert builds(caplog) == 1
    assert probe(venvs[0]) == "one"


def test_another_wheel_gets_another_venv_and_a_half_built_one_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Other wheel bytes get a venv of their own; a venv whose stamp is missing (pip did not finish) is rebuilt
    instead of reused."""
    caplog.set_level(logging.INFO, logger="devtools.release_venv")
    first = release_venv.ensure(tiny_wheel(tmp_path / "a", "VALUE = 'a'\n"), tmp_path / "venvs", timeout_s=300)
    second = release_venv.ensure(tiny_wheel(tmp_path / "b", "VALUE = 'b'\n"), tmp_path / "venvs", timeout_s=300)
    assert first != second and (probe(first), probe(second)) == ("a", "b")
    (first / release_venv.STAMP).unlink()
    again = release_venv.ensure(tiny_wheel(tmp_path / "a", "VALUE = 'a'\n"), tmp_path / "venvs", timeout_s=300)
    assert again == first and probe(again) == "a"
    assert builds(caplog) == 3
