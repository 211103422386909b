"""``release-hold`` against a real etcd: it names every other standing hold still over the runs it held (id, what it
covers, the DAGs both cover) and says those stay held; with none in the way it says each held run starts once. What
is below a --downstream hold comes from the adopted graph, else the local file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from coordinator.cli import incident_cmds  # registers `hold` and `release-hold` on the app
from coordinator.core.activation import adopt, dump_activation
from coordinator.core.holds import Hold, parse_selector
from coordinator.core.model import KeyLayout, dump_record
from coordinator.core.spec.loader import parse_spec
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings
from tests.test_holds_status_release import DEPS, P2, P, cli, hold, run

assert incident_cmds and cli  # cli: the fixture, shared with the status tests


def test_release_names_the_other_holds_still_in_the_way(cli: CliRunner) -> None:
    """Releasing a hold on a for P while a --downstream hold on r stands says that hold still holds a (id, selector,
    range) and those runs stay held; a hold of a on another partition is not named; the last release names none."""
    first = hold(cli, "a", "--from", P, "--to", P, "--reason", "bad data in a")
    above = hold(cli, "r", "--downstream", "--reason", "bad data in r")
    elsewhere = hold(cli, "a", "--from", P2, "--to", P2, "--reason", "another day")
    released = run(cli, "release-hold", first).stdout
    assert "except the runs another hold still holds" in released, released
    said = " ".join(released.split())
    assert (f"hold {above} (r and every DAG below, every partition, by alice: bad data in r) still holds a: those "
            f"runs stay held until `coordinator release-hold {above}`") in said, released  # fmt: skip
    assert elsewhere not in released
    assert f"hold {above} (" in run(cli, "release-hold", elsewhere).stdout
    last = run(cli, "release-hold", above).stdout
    assert "the leading watcher starts each run it held, once" in last and "still holds" not in last, last


def test_without_a_local_file_the_adopted_graph_says_what_is_below(
    etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """No dependencies file where release-hold runs: the graph the watcher adopted says that b is below a --downstream
    hold on a, so releasing a hold on b names it."""
    graph = parse_spec(json.dumps(DEPS), "deps.json")
    keys = KeyLayout(etcd_prefix)
    now = datetime.now(UTC)
    on_b = Hold(id="h-b", selector=parse_selector("b"), nodes=("default/b",), reason="bad b", by="bob",
                created_at=now - timedelta(minutes=2))  # fmt: skip
    on_a = Hold(id="h-a", selector=parse_selector("a"), nodes=("default/a",), downstream=True, reason="bad a",
                by="alice", created_at=now - timedelta(minutes=1))  # fmt: skip

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            activation = adopt(graph.shapes, graph.digest, None, await store.current_revision(), sources=graph.dags)
            assert activation is not None
            await store.put(keys.config_key("graph"), dump_activation(activation))
            for h in (on_b, on_a):
                await store.put(keys.hold_key(h.id), dump_record(h))

    asyncio.run(write())
    cli = CliRunner(env={"COORDINATOR_ETCD_ENDPOINTS": etcd_endpoint, "COORDINATOR_PREFIX": etcd_prefix,
                         "COORDINATOR_DEPS": str(tmp_path / "absent.json")})  # fmt: skip
    said = " ".join(run(cli, "release-hold", "h-b").stdout.split())
    assert ("hold h-a (a and every DAG below, every partition, by alice: bad a) still holds b: those runs stay held "
            "until `coordinator release-hold h-a`") in said, said  # fmt: skip
