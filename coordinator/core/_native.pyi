"""The compiled reader (``_native.c``) and the compact facts it fills (``_facts.c``): ``core.canonical`` configures
the reader and calls it, ``core.facts`` adopts the facts; nobody else."""

from typing import Any

RUN_FIELDS: tuple[str, ...]
LEDGER_FIELDS: tuple[str, ...]

class RunFact: ...
class LedgerFact: ...

def adopt(compact: type, fields: tuple[str, ...], defaults: dict[str, Any], members: dict[str, Any], /) -> bool: ...
def configure(
    states: dict[str, Any],
    actions: dict[str, Any],
    active: frozenset[Any],
    done: Any,
    /,
) -> None: ...
def run_fact(raw: bytes, rev: int, /) -> Any: ...
def done_ledger_fact(raw: bytes, mod_rev: int, names: dict[tuple[str, ...], tuple[str, ...]], /) -> Any: ...
def load_fast(
    page: list[tuple[str, bytes, int]] | tuple[bytes, bytes], at: int, top: int, state: tuple[Any, ...], /
) -> tuple[int, int]: ...
