"""The compiled reader (``_native.c``): ``core.canonical`` configures it and calls it, nobody else."""

from typing import Any

RUN_FIELDS: tuple[str, ...]
LEDGER_FIELDS: tuple[str, ...]

def configure(
    run_fact: type,
    ledger_fact: type,
    states: dict[str, Any],
    actions: dict[str, Any],
    active: frozenset[Any],
    done: Any,
    utc: Any,
    /,
) -> None: ...
def run_fact(raw: bytes, rev: int, /) -> Any: ...
def done_ledger_fact(raw: bytes, mod_rev: int, names: dict[tuple[str, ...], tuple[str, ...]], /) -> Any: ...
