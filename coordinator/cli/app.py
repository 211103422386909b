"""The typer application object and the options every command shares.

Rules: commands parse arguments, build :class:`Settings`, call one function, and turn known errors into a message on
stderr plus an exit code (2: bad input or configuration, 1: a runtime failure such as etcd being unreachable). No
command prints a traceback: an unexpected error leaves ``main()`` as ``error: unexpected ...`` and exit 2
(``COORDINATOR_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from coordinator.errors import ConfigError, CoordinatorError, SpecError, StoreError, StoreUnavailable
from coordinator.settings import Settings

# Typer (0.29) prints each option's type beside it, "<bool>" included for flags, which take no value: a reader
# takes it for an argument to give. Flags show no type; every other option keeps its own.
_display_type_rich = typer.core.TyperOption.display_type_rich


def _display_type_unless_flag(self: typer.core.TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _display_type_unless_flag  # type: ignore[method-assign]

app = typer.Typer(
    name="coordinator",
    help="DAG-to-DAG dependencies across Airflow DAGs, teams and instances, with etcd as the shared state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Piped output (CI logs, `| less`) gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_INVALID = 2
EXIT_FAILURE = 1
#: The next step after "cannot reach etcd": every command that reads etcd names the two places its address comes from.
ETCD_HINT = (
    "Is etcd running there? The address comes from --etcd or COORDINATOR_ETCD_ENDPOINTS (see `coordinator doctor`)"
)

EtcdOpt = Annotated[
    str | None,
    typer.Option("--etcd", help="etcd endpoints, comma-separated http(s)://host:port [env COORDINATOR_ETCD_ENDPOINTS]"),
]
PrefixOpt = Annotated[
    str | None, typer.Option("--prefix", help="etcd key prefix [env COORDINATOR_PREFIX, default /coordinator]")
]
DepsOpt = Annotated[
    Path | None,
    typer.Option("--deps", help="dependencies.json [env COORDINATOR_DEPS, default ./dependencies.json]"),
]


def _print_version(value: bool) -> None:
    if value:
        from coordinator import __version__

        typer.echo(f"coordinator {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """DAG-to-DAG dependencies across Airflow DAGs, teams and instances, with etcd as the shared state.

    Something does not move? Run `coordinator doctor`.
    """


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    # Text, not markup: a message may quote user input such as $["[bold]"], which markup would mangle.
    err.print(Text("error: ", style="bold red") + Text(message))
    raise typer.Exit(code)


def build_settings(**overrides: Any) -> Settings:
    """Settings from the environment, overridden by the flags that were given (None = not given)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        fail(f"invalid configuration: {problems}")


T = TypeVar("T")


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion, mapping the coordinator's errors to exit codes."""
    try:
        return asyncio.run(factory())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except (ConfigError, SpecError) as exc:
        fail(str(exc), EXIT_INVALID)
    except StoreUnavailable as exc:
        fail(f"etcd: {exc}. {ETCD_HINT}", EXIT_FAILURE)
    except StoreError as exc:
        fail(f"etcd: {exc}", EXIT_FAILURE)
    except CoordinatorError as exc:
        fail(str(exc), EXIT_FAILURE)


def main() -> None:
    """Console-script entry point."""
    # Import the command modules for their registrations on ``app``.
    from coordinator.cli import (  # noqa: F401
        airflow_cmds,
        asset_cmds,
        budget_cmds,
        check_airflow_cmds,
        diff_cmds,
        doctor_cmds,
        engine_cmds,
        import_cmds,
        lineage_cmds,
        probe_cmds,
        prune_cmds,
        roles_cmds,
        spec_cmds,
        state_cmds,
    )

    # Outside typer a ``fail()`` (typer.Exit) would escape as a traceback: errors here print and exit directly.
    try:
        app()
    except (ConfigError, SpecError) as exc:
        _exit(str(exc), EXIT_INVALID)
    except CoordinatorError as exc:
        _exit(str(exc), EXIT_FAILURE)
    except Exception as exc:  # a bug of ours or of a library: a message and exit 2, the traceback only on request
        if os.environ.get("COORDINATOR_TRACEBACK"):
            traceback.print_exc()
        _exit(
            f"unexpected {type(exc).__name__}: {exc} (a bug of coordinator: please report it with the command; "
            "COORDINATOR_TRACEBACK=1 prints the traceback)",
            EXIT_INVALID,
        )
    sys.exit(0)


def _exit(message: str, code: int) -> NoReturn:
    """``fail()`` for main(): print ``error: message`` on stderr and leave the process with ``code``."""
    err.print(Text("error: ", style="bold red") + Text(message))
    sys.exit(code)
