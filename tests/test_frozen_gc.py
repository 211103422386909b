"""``coordinator/runtime/frozen_gc.py``: a block runs with the cyclic GC off, then what it tracks is frozen and the
GC is on again; a process whose GC is already off is left as it is."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from coordinator.runtime.frozen_gc import held_off_then_frozen


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The collector on and nothing frozen by the test once it ends (``gc.unfreeze`` puts frozen objects back)."""
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector_restored")
def test_the_block_runs_with_the_collector_off_then_it_is_on_and_the_block_objects_frozen() -> None:
    """Inside the block the GC is off; after it, it is on and the objects made inside are in the permanent
    generation (not seen by collections), also when the block raised."""
    gc.enable()
    gc.unfreeze()
    with held_off_then_frozen():
        assert not gc.isenabled()
        made = [[] for _ in range(1_000)]
    assert gc.isenabled() and gc.get_freeze_count() >= len(made)
    tracked = {id(o) for o in gc.get_objects()}  # the three generations, not the permanent one
    assert gc.is_tracked(made[0]) and not any(id(m) in tracked for m in made)
    gc.unfreeze()
    with pytest.raises(ImportError), held_off_then_frozen():
        raise ImportError("a failed import")
    assert gc.isenabled() and gc.get_freeze_count() > 0


@pytest.mark.usefixtures("collector_restored")
def test_a_process_with_the_collector_off_is_left_as_it_is() -> None:
    """A GC already off stays off through the block and after it, and nothing is frozen."""
    gc.unfreeze()
    gc.disable()
    with held_off_then_frozen():
        assert not gc.isenabled()
        _ = [[] for _ in range(100)]
    assert not gc.isenabled() and gc.get_freeze_count() == 0
