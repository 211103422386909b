"""A graph too large for one JSON value in etcd: its activation is stored gzip-compressed, under etcd's default request
limit, and read back the same by every reader; a small graph writes the JSON it always wrote; a damaged compressed
value is a problem the view names, not a crash; etcd's refusal of a request that is still too large names the flag
that fixes it (against a real etcd)."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import pytest

from coordinator.core import activation as act
from coordinator.core.activation import Activation, adopt, dump_activation, load_activation
from coordinator.core.graph import Graph
from coordinator.core.model import KeyLayout
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.errors import StoreError
from coordinator.etcd import EtcdStore
from coordinator.runtime.settings import EtcdSettings

#: etcd's default ``--max-request-bytes``.
ETCD_DEFAULT_REQUEST_BYTES = 1536 * 1024


def layered(dags: int) -> Graph:
    """``dags`` DAGs: one root and the rest each depending on the root and on the DAG before it."""
    names = [f"pipeline_{i:05d}" for i in range(dags)]
    spec = {name: {"upstreams": [names[0], names[i - 1]] if i > 1 else [names[0]]} for i, name in enumerate(names) if i}
    return parse_spec(json.dumps({"version": 1, "dags": spec}))


def adopted(graph: Graph) -> Activation:
    found = adopt(graph.shapes, graph.digest, None, 7, "w1", sources=graph.dags)
    assert found is not None
    return found


def test_a_small_graph_writes_the_json_it_always_wrote() -> None:
    """A 50-DAG graph's value is its plain JSON (what ``etcdctl get`` shows), and reads back equal."""
    activation = adopted(layered(50))
    value = dump_activation(activation)
    assert value.startswith(b"{") and json.loads(value)["digest"] == activation.digest
    assert load_activation(value) == activation


def test_a_graph_over_the_plain_limit_is_stored_compressed_under_etcds_default_limit() -> None:
    """12,000 DAGs take about 2 MB as JSON, over etcd's default 1.5 MiB request limit: the value is gzip (the same
    bytes each time), a fraction of that limit, and reads back equal to the activation."""
    activation = adopted(layered(12_000))
    plain = json.dumps(activation.model_dump(mode="json")).encode()
    assert len(plain) > ETCD_DEFAULT_REQUEST_BYTES
    value = dump_activation(activation)
    assert value.startswith(act.GZIP_MAGIC) and len(value) < ETCD_DEFAULT_REQUEST_BYTES // 4
    assert dump_activation(activation) == value
    assert len(json.loads(gzip.decompress(value))["nodes"]) == 12_000
    assert load_activation(value) == activation


def test_a_graph_just_over_the_plain_limit_is_compressed_and_one_just_under_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limit is on the JSON's own size: at the limit the JSON is written, one byte over it the gzip."""
    activation = adopted(layered(200))
    plain = dump_activation(activation)
    monkeypatch.setattr(act, "PLAIN_MAX_BYTES", len(plain))
    assert dump_activation(activation) == plain
    monkeypatch.setattr(act, "PLAIN_MAX_BYTES", len(plain) - 1)
    assert gzip.decompress(dump_activation(activation)) == plain


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda v: v[:-20], "cut short"),
        (lambda v: act.GZIP_MAGIC + b"\x08\x00" + b"\xff" * 40, "does not inflate"),
        (lambda v: gzip.compress(b"not json", mtime=0), "Invalid JSON"),
    ],
    ids=["truncated", "not-deflate", "not-json"],
)
def test_a_damaged_compressed_value_is_a_problem_the_view_names(damage: object, words: str) -> None:
    """A compressed value cut short, not deflate data, or not JSON inside: ``load_activation`` raises ValueError, and
    the view records the key as unparsable (to be rewritten) with no activation, instead of failing the load."""
    value = damage(dump_activation(adopted(layered(12_000))))  # type: ignore[operator]
    with pytest.raises(ValueError, match=words):
        load_activation(value)
    keys = KeyLayout("/c")
    view = View(keys)
    view.load(5, [(keys.config_key("graph"), value, 5)])
    assert view.activation is None
    assert words in view.problems[keys.config_key("graph")]


def test_a_value_that_inflates_beyond_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compressed value whose JSON would be larger than ``INFLATED_MAX_BYTES`` is refused, not inflated whole."""
    monkeypatch.setattr(act, "INFLATED_MAX_BYTES", 64 * 1024)
    bomb = gzip.compress(b" " * (10 * 1024 * 1024), mtime=0)
    assert len(bomb) < 20_000
    with pytest.raises(ValueError, match="inflates to more than 65536 bytes"):
        load_activation(bomb)
    assert zlib.decompress(bomb, wbits=31) == b" " * (10 * 1024 * 1024)  # a valid stream: only the bound refused it


@pytest.mark.parametrize("size", [1_600_000, 3_000_000], ids=["etcd-limit", "grpc-limit"])
def test_etcd_refusing_a_request_this_large_names_the_flag(etcd_settings: EtcdSettings, size: int) -> None:
    """A real etcd (default limits) refuses a value over 1.5 MiB (its own error) and over 2 MiB (its gRPC server's):
    both are a StoreError that says to start etcd with a larger ``--max-request-bytes`` and gives a value."""

    async def main() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            await store.put("/test-activation-large/too-big", b"x" * size)

    with pytest.raises(StoreError, match=r"start etcd with a larger --max-request-bytes .* e\.g\. "
                                         r"--max-request-bytes=10485760"):  # fmt: skip
        asyncio.run(main())
