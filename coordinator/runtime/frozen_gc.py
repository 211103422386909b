"""A block that makes objects for the life of the process, run with Python's cyclic garbage collector held off and
what it made frozen after: the console script's imports (``coordinator/cli``) and a watcher's load of its view
(``Informer.load(long_lived=True)``).

Both make hundreds of thousands to millions of objects and free next to none, and the collector runs over them
again and again as they pile up: its young collections every few hundred new objects, and its full ones, which walk
every object made so far, as the total grows by a quarter. A command's start imports some 800 modules before it does
anything (``coordinator watch`` before its first read of etcd): that was about 0.1 s of the imports' 0.55-0.67 s,
and 0.05 s more of the 0.24-0.28 s that ``coordinator watch`` then spends reading the dependencies file of 5,000
DAGs, whose full collections walked the imports' objects again. A load with the collector on spent half its time in
it at 100,000 keys, and the first collections after it walked the whole view (~0.15 s at 100,000 keys).

Rules:
- **Held off, then frozen.** While the block runs the collector is off; after it, also when the block raised,
  everything it tracks is moved to its permanent generation (``gc.freeze()``) and it is on again: no later collection
  walks those objects. Frozen objects are still freed by reference counting (a view replaced by a relist, say); the
  price is that a cycle left as garbage at that moment is never collected, and these blocks leave next to none.
- **Not a process that manages its own.** A process whose collector is already off when the block starts (a test, a
  program embedding the CLI that tunes it itself) is left as it is: nothing is disabled, frozen or enabled. A reader
  inside another long-lived process (the dependencies page inside Airflow's api-server) must not freeze at all: it
  does not use this block.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held_off_then_frozen() -> Iterator[None]:
    """Run the block with the cyclic GC off, then freeze what it tracks and turn it back on (the module's rules)."""
    if not gc.isenabled():  # **Not a process that manages its own**
        yield
        return
    gc.disable()
    try:
        yield
    finally:  # **Held off, then frozen**, a failed block too: the process may go on
        gc.freeze()
        gc.enable()
