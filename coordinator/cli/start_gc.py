"""The console script's imports with Python's cyclic garbage collector held off, and what they made frozen after.

A command's start imports some 800 modules before it does anything (``coordinator watch`` before its first read of
etcd): classes, functions, dataclasses, enums and the libraries' tables, nearly none of them garbage. The collector
runs over them again and again as they pile up: its young collections every few hundred new objects, and its full
ones, which walk every object made so far, as the total grows by a quarter. That was about 0.1 s of the imports'
0.55-0.67 s, and 0.05 s more of the 0.24-0.28 s that ``coordinator watch`` then spends reading the dependencies
file of 5,000 DAGs, whose full collections walked the imports' objects again.

Rules:
- **Held off, then frozen.** While the block runs the collector is off; after it, everything it tracks is moved to
  its permanent generation (``gc.freeze()``, as the watcher already does with its view once loaded) and it is on
  again. Modules live as long as the process, so no later collection walks them again. The price: a cycle that the
  imports left as garbage is never collected; the imports leave next to none.
- **Not a process that manages its own.** A process whose collector is already off when the block starts (a test,
  a program embedding the CLI that tunes it itself) is left as it is: nothing is disabled, frozen or enabled.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Run the block with the cyclic GC off, then freeze what it tracks and turn it back on (the module's rules)."""
    if not gc.isenabled():  # **Not a process that manages its own**
        yield
        return
    gc.disable()
    try:
        yield
    finally:  # a failed import too: the process may go on (an error printed, a test's next step)
        gc.freeze()
        gc.enable()
