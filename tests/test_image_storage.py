"""How devtools.image picks buildah's storage driver: buildah's own STORAGE_DRIVER when set, else overlay where a
probe container mounts, else vfs; the probe container is removed either way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import image

FAKE_BUILDAH = """#!/bin/sh
echo "$@" >> "{calls}"
case "$3" in
  from) echo probe-container ;;
  mount) exit {mount_rc} ;;
esac
exit 0
"""


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("STORAGE_DRIVER", raising=False)
    image.storage.cache_clear()
    yield
    image.storage.cache_clear()


def fake_buildah(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mount_rc: int) -> Path:
    calls = tmp_path / "calls"
    program = tmp_path / "buildah"
    program.write_text(FAKE_BUILDAH.format(calls=calls, mount_rc=mount_rc), encoding="utf-8")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    return calls


def test_overlay_is_chosen_where_a_probe_container_mounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe container that mounts on overlay makes every buildah call use overlay; the probe is removed."""
    calls = fake_buildah(tmp_path, monkeypatch, mount_rc=0)
    assert image.storage() == ("--storage-driver", "overlay")
    assert calls.read_text().splitlines() == [
        "--storage-driver overlay from scratch",
        "--storage-driver overlay mount probe-container",
        "--storage-driver overlay rm probe-container",
    ]


def test_vfs_is_chosen_where_overlay_cannot_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the overlay mount fails (no kernel support, a container), the builds use vfs and the probe is removed."""
    calls = fake_buildah(tmp_path, monkeypatch, mount_rc=125)
    assert image.storage() == ("--storage-driver", "vfs")
    assert calls.read_text().splitlines()[-1] == "--storage-driver overlay rm probe-container"


def test_storage_driver_in_the_environment_wins_without_a_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STORAGE_DRIVER=vfs (buildah's own variable) is used as set, and buildah is not asked anything."""
    calls = fake_buildah(tmp_path, monkeypatch, mount_rc=0)
    monkeypatch.setenv("STORAGE_DRIVER", "vfs")
    assert image.storage() == ("--storage-driver", "vfs")
    assert not calls.exists()
