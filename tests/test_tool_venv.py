"""The pinned tool venvs (devtools/tool_venv.py, ``.venv-sbom`` for ``make dist``): built once, reused while the
pins are unchanged, rebuilt when they change or when a build did not finish. Real ``python -m venv`` and pip, offline
(a tiny local wheel in a wheelhouse, ``--no-index``)."""

from __future__ import annotations

import base64
import hashlib
import logging
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools import tool_venv

#: Builds venvs with pip (a minute or more): not in `make fast`.
pytestmark = [pytest.mark.install, pytest.mark.timeout(600)]


def tiny_wheel(folder: Path, version: str) -> Path:
    """A pure-Python wheel ``tvprobe-VERSION`` whose module says its version."""
    dist_info = f"tvprobe-{version}.dist-info"
    files = {
        "tvprobe.py": f"VALUE = {version!r}\n".encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: tvprobe\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"tvprobe-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel


def probe(venv: Path) -> str:
    done = subprocess.run([str(tool_venv.python(venv)), "-c", "import tvprobe; print(tvprobe.VALUE)"],
                          capture_output=True, text=True, timeout=60, check=True, cwd="/")  # fmt: skip
    return done.stdout.strip()


def builds(caplog: pytest.LogCaptureFixture) -> int:
    return sum(record.getMessage().startswith("tool_venv.build ") for record in caplog.records)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheelhouse"
    tiny_wheel(house, "1.0")
    tiny_wheel(house, "2.0")
    return house


def ensure(root: Path, pins: Path, wheelhouse: Path) -> Path:
    return tool_venv.ensure(
        root, "probe", ["tvprobe"], pins, pip_options=["--no-index", "--find-links", str(wheelhouse)]
    )


def test_built_once_then_reused_while_the_pins_are_unchanged(
    tmp_path: Path, wheelhouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three callers at once, then a fourth, get one venv built once, with the pinned version, ignored by git."""
    caplog.set_level(logging.INFO, logger="devtools.tool_venv")
    pins = tmp_path / "probe.txt"
    pins.write_text("tvprobe==1.0\n", encoding="utf-8")
    with ThreadPoolExecutor(3) as pool:
        venvs = list(pool.map(lambda _: ensure(tmp_path, pins, wheelhouse), range(3)))
    assert set(venvs) == {tmp_path.resolve() / ".venv-probe"}
    assert ensure(tmp_path, pins, wheelhouse) == venvs[0]
    assert builds(caplog) == 1
    assert probe(venvs[0]) == "1.0"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    assert ".venv-probe" not in status.stdout


def test_rebuilt_when_the_pins_change_or_a_build_did_not_finish(
    tmp_path: Path, wheelhouse: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """New pins rebuild the venv with the new version; a venv without its fingerprint (a killed build) is rebuilt."""
    caplog.set_level(logging.INFO, logger="devtools.tool_venv")
    pins = tmp_path / "probe.txt"
    pins.write_text("tvprobe==1.0\n", encoding="utf-8")
    venv = ensure(tmp_path, pins, wheelhouse)
    assert probe(venv) == "1.0"
    pins.write_text("tvprobe==2.0\n", encoding="utf-8")
    assert ensure(tmp_path, pins, wheelhouse) == venv
    assert probe(venv) == "2.0"
    assert builds(caplog) == 2
    (venv / tool_venv.FINGERPRINT_FILE).unlink()
    assert ensure(tmp_path, pins, wheelhouse) == venv
    assert probe(venv) == "2.0"
    assert builds(caplog) == 3


def test_sbom_pins_name_the_generator_and_how_to_regenerate_them() -> None:
    """constraints/sbom.txt pins cyclonedx-bom and says how to regenerate it with the command this module runs."""
    pins = tool_venv.SBOM.constraints().read_text(encoding="utf-8")
    assert "make lock-sbom" in pins.splitlines()[1]
    assert "cyclonedx-bom==7.5.0" in pins.splitlines()
