"""A graph too large for one plain value in etcd: 12,000 DAGs, whose activation takes about 2 MB as JSON, over a real
etcd's default 1.5 MiB request limit. A real watcher adopts it (stored gzip-compressed), leads and triggers exactly
once; ``coordinator diff`` reads the adopted graph back."""

from __future__ import annotations

import json

import pytest

from coordinator.core.activation import GZIP_MAGIC, load_activation
from tests.scenario.conftest import Stack, new_partition

pytestmark = pytest.mark.scenario

#: More DAGs than fit in etcd's default request limit as plain JSON (about 170 bytes a DAG).
FILLERS = 12_000


def test_a_graph_over_etcds_request_limit_is_adopted_and_acted_on_once(stack: Stack) -> None:
    """The leader adopts the 12,002-DAG graph (the value gzip, under 1.5 MiB, holding every DAG); a producer's success
    triggers its consumer once and nothing else moves; ``coordinator diff`` finds the file equal to what was adopted."""
    stack.fake.add_dag("producer")
    stack.fake.add_dag("consumer")
    fillers = {f"filler_{i:05d}": {"upstreams": ["filler_root"]} for i in range(FILLERS)}
    stack.set_deps({"version": 1, "dags": {"consumer": {"upstreams": ["producer"]}, **fillers}})
    stack.start_watcher()  # returns once it leads: the graph adopted and its first pass done

    value = stack.etcd.get(stack.keys.config_key("graph"))
    assert value is not None and value.startswith(GZIP_MAGIC) and len(value) < 1536 * 1024
    assert len(load_activation(value).nodes) == FILLERS + 3  # the fillers, their root, producer and consumer

    day = new_partition()
    stack.trigger_root(day, dag="producer")
    stack.wait_success("consumer", day)
    stack.settle()
    stack.assert_once(day, ("consumer",))
    assert stack.fake.creates("consumer") == 1 and stack.fake.calls("trigger", "producer") == 0

    shown = stack.cli("diff", "--format", "json")
    assert json.loads(shown.stdout)["changed"] is False, shown.stdout
