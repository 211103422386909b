"""The scenario harness itself: what it attributes and what it refuses to let pass."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.scenario.conftest import LAST, Stack, new_partition

pytestmark = pytest.mark.scenario


def test_a_bug_in_the_fake_fails_the_scenario_at_teardown(
    tmp_path: Path, etcd_endpoint: str, etcd_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the fake Airflow (answered 500, which a watcher would just retry) fails the teardown."""
    world = Stack(tmp_path, etcd_endpoint, etcd_prefix)
    world.fake.start()

    def broken(*args: object) -> tuple[int, Any]:
        raise KeyError("a bug in the fake")

    try:
        monkeypatch.setattr(world.fake, "_dispatch", broken)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(world.fake.url + "/api/v2/version", timeout=5)
        answer.value.close()
        assert answer.value.code == 500
        with pytest.raises(AssertionError, match=r"the fake Airflow itself failed.*KeyError"):
            world.close(failed=False)
    finally:
        world.fake.stop()  # idempotent: close() already stopped it unless the test failed before


def test_requests_are_attributed_to_the_watcher_that_sent_them(stack: Stack) -> None:
    """With two watchers running, every request the fake logs names the leader that sent it, never the standby."""
    leader = stack.start_watcher("leader", ttl=10)
    standby = stack.start_watcher("standby", ttl=10, ready="loaded")
    p = new_partition()
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    clients = {r.client for r in stack.fake.requests()}
    assert clients == {leader.name}, clients
    assert len(stack.fake.requests("trigger")) == 6
    assert standby.alive
