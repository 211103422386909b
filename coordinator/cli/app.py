"""The typer application object and the options every command shares.

Rules: commands parse arguments, build :class:`Settings`, call one function, and turn known errors into a message on
stderr plus an exit code (2: bad input or configuration, a TLS mistake with etcd included, with its ``fix:`` line;
1: a runtime failure such as etcd being unreachable). No command prints a traceback: an unexpected error leaves
``coordinator.cli.entry.main()`` as ``error: unexpected ...`` and exit 2 (``COORDINATOR_TRACEBACK=1`` shows the
traceback).

Options explain themselves in ``--help`` (tests/test_cli_help.py holds every command to it): an option that overrides
a setting declares its environment variable (:func:`setting_option`), every option shows its default or is required,
a short option means the same long option everywhere, a value's metavar says what to type, and every command sits in
one panel of :data:`PANELS`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from coordinator.errors import ConfigError, CoordinatorError, SpecError, StoreError, StoreTlsError, StoreUnavailable
from coordinator.runtime.settings import Settings

# Typer (0.29) prints each option's type beside it, "<bool>" included for flags, which take no value: a reader
# takes it for an argument to give. Flags show no type; every other option names what to type (its metavar).
_display_type_rich = typer.core.TyperOption.display_type_rich


def _display_type_unless_flag(self: typer.core.TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _display_type_rich(self, ctx)


typer.core.TyperOption.display_type_rich = _display_type_unless_flag  # type: ignore[method-assign]

# An argument is shown by its metavar (DAG, FILE), which already says what to type; typer would add "<str>" beside it.
_argument_type_rich = typer.core.TyperArgument.display_type_rich


def _argument_type_unless_named(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    return None if self.metavar is not None else _argument_type_rich(self, ctx)


typer.core.TyperArgument.display_type_rich = _argument_type_unless_named  # type: ignore[method-assign,assignment]

# An option whose value stays None until given (so Settings, or the command, decides) shows the default it stands
# for as a string; click and typer put such a string in parentheses ("[default: (127.0.0.1:9465)]"), which would
# make two styles of default in one listing. Every default reads "[default: X]".
_default_string = typer.core.TyperOption._get_default_string


def _default_string_unwrapped(self: Any, *, ctx: Any, show_default_is_str: bool, default_value: Any) -> str:
    if show_default_is_str:
        return str(self.show_default)
    return _default_string(self, ctx=ctx, show_default_is_str=False, default_value=default_value)


typer.core.TyperOption._get_default_string = _default_string_unwrapped  # type: ignore[method-assign]
typer.core.TyperArgument._get_default_string = _default_string_unwrapped  # type: ignore[method-assign]

#: The panels of ``coordinator --help``, in this order; every command is in one (``rich_help_panel``).
SETUP = "Setup: describe the dependencies, check the installation"
RUN = "Run: the services and the one-shot pass"
INSPECT = "Inspect: read what the coordinator knows (changes nothing)"
OPERATE = "Operate: change state by hand"
PANELS = (SETUP, RUN, INSPECT, OPERATE)


class PanelOrderGroup(typer.core.TyperGroup):
    """Commands listed panel by panel (:data:`PANELS`), by name within a panel: the order does not depend on which
    module happened to be imported first."""

    def list_commands(self, ctx: Any) -> list[str]:
        def rank(name: str) -> tuple[int, str]:
            panel = getattr(self.commands[name], "rich_help_panel", None)
            return (PANELS.index(panel) if panel in PANELS else len(PANELS), name)

        return sorted(self.commands, key=rank)


app = typer.Typer(
    name="coordinator",
    help="DAG-to-DAG dependencies across Airflow DAGs, teams and instances, with etcd as the shared state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PanelOrderGroup,
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


def env_var(field: str) -> str:
    """The environment variable of the setting ``field`` (``runtime.settings``'s **An environment variable each**:
    ``COORDINATOR_<NAME>``)."""
    assert field in Settings.model_fields, field
    return f"{Settings.model_config.get('env_prefix', '')}{field.upper()}"


def setting_option(*flags: str, field: str, help: str, metavar: str, shown: str | None = None) -> Any:
    """An option that overrides the setting ``field``: ``--help`` shows its environment variable and the setting's
    default (``shown`` instead, for a setting without one or a command whose default differs). The value stays None
    when neither the flag nor the variable is given, so :func:`build_settings` leaves the setting to Settings."""
    default = Settings.model_fields[field].default
    return typer.Option(
        *flags, envvar=env_var(field), show_envvar=True, show_default=shown if shown is not None else str(default),
        help=help, metavar=metavar,
    )  # fmt: skip


def typed(ctx: typer.Context, param: str) -> bool:
    """True when ``param`` was given on the command line (not read from its environment variable, not defaulted):
    the commands that report where each setting came from tell a flag from the environment with it."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "COMMANDLINE"


EtcdOpt = Annotated[
    str | None,
    setting_option(
        "--etcd",
        field="etcd_endpoints",
        metavar="ENDPOINTS",
        help="etcd endpoints, comma-separated http(s)://host:port",
    ),
]
PrefixOpt = Annotated[str | None, setting_option("--prefix", field="prefix", metavar="PREFIX", help="etcd key prefix")]
DepsOpt = Annotated[
    Path | None, setting_option("--deps", field="deps", metavar="FILE", help="the dependencies file (JSON)")
]

AirflowUrlOpt = Annotated[
    str | None,
    setting_option(
        "--airflow-url", field="airflow_url", metavar="URL", shown="none",
        help="Airflow base URL of instance 'default' (its login: COORDINATOR_AIRFLOW_USERNAME and _PASSWORD, or "
        "_PASSWORD_FILE, read again at every login: a corrected file needs no restart)",
    ),
]  # fmt: skip
InstancesOpt = Annotated[
    Path | None,
    setting_option(
        "--instances", field="instances_file", metavar="FILE", shown="none",
        help="instances file: each instance name -> its URL and where its credentials come from (its password_file "
        "and token_file are read again at every login)",
    ),
]  # fmt: skip


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
    except StoreTlsError as exc:
        # A TLS mistake is configuration (ours or etcd's): waiting does not fix it, the setting named does.
        fail(f"etcd: {exc}\nfix: {exc.fix}", EXIT_INVALID)
    except StoreUnavailable as exc:
        fail(f"etcd: {exc}. {ETCD_HINT}", EXIT_FAILURE)
    except StoreError as exc:
        fail(f"etcd: {exc}", EXIT_FAILURE)
    except CoordinatorError as exc:
        fail(str(exc), EXIT_FAILURE)


def exit_with(message: str, code: int) -> NoReturn:
    """``fail()`` outside typer (``coordinator.cli.entry.main``): print ``error: message`` on stderr and leave the
    process with ``code``."""
    err.print(Text("error: ", style="bold red") + Text(message))
    sys.exit(code)
