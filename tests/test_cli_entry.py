"""The console script loads only the module of the command it runs (``coordinator/cli/entry.py``'s **A command loads
its own module**), and the whole app for anything else."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from coordinator.cli.app import app
from coordinator.cli.entry import COMMAND_MODULES, command_of, load_commands
from tests.conftest import ROOT

#: Prints the help or the error, then the command modules of ``coordinator.cli`` the process imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("LOADED", " ".join(sorted(
    m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("coordinator.cli.") and m.endswith("_cmds")))))
sys.argv = ["coordinator", *sys.argv[1:]]
from coordinator.cli.entry import main
main()
"""


def registering_modules() -> dict[str, str]:
    """Each command and group of the whole app, by the module of ``coordinator.cli`` whose functions it runs."""
    load_commands()
    found: dict[str, str] = {}
    for info in app.registered_commands:
        assert info.callback is not None
        found[info.name or info.callback.__name__.replace("_", "-")] = info.callback.__module__
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None and isinstance(sub.info.name, str)
        (module,) = {c.callback.__module__ for c in sub.registered_commands if c.callback is not None}
        found[sub.info.name] = module
    assert sorted(found) == sorted(typer.main.get_group(app).commands), "a command the scan above does not see"
    return {name: module.removeprefix("coordinator.cli.") for name, module in found.items()}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_probe(PROBE, *args)


def run_probe(probe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def loaded(done: subprocess.CompletedProcess[str]) -> set[str]:
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("LOADED")]
    return set(line.split()[1:])


def test_the_table_names_the_module_that_registers_each_command() -> None:
    """COMMAND_MODULES names every command and group of the whole app, each with the module that registers it."""
    assert registering_modules() == COMMAND_MODULES


def test_only_a_leading_known_command_narrows_the_load() -> None:
    """A known command as the first argument is the one loaded; no argument, an option first or an unknown word load
    everything."""
    assert command_of(["watch", "--etcd", "http://127.0.0.1:2379"]) == "watch"
    assert command_of(["lineage", "serve"]) == "lineage"
    assert [command_of(argv) for argv in ([], ["--help"], ["--version"], ["wacth"], ["--help", "watch"])] == [None] * 5


def test_a_command_imports_only_its_own_command_module_and_runs() -> None:
    """``coordinator watch --help`` prints watch's help and imports engine_cmds (with the asset module it uses) and
    no other command module; ``coordinator validate`` runs from spec_cmds alone and says what is wrong."""
    helped = run("watch", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Run the watcher service" in helped.stdout and "--first-start-limit" in helped.stdout, helped.stdout
    assert loaded(helped) == {"engine_cmds", "asset_cmds"}, helped.stdout
    missing = run("validate", "--deps", str(ROOT / "no-such-dependencies.json"))
    assert missing.returncode == 2 and "no-such-dependencies.json" in missing.stderr, missing
    assert loaded(missing) == {"spec_cmds"}, missing.stdout


def test_a_command_leaves_out_httpx_own_command_line_client() -> None:
    """``coordinator watch`` (here stopped by a missing file) imports httpx, the Airflow client, but not httpx's
    command-line client nor the libraries only that client loads (click, pygments)."""
    report = 'atexit.register(lambda: print("MODULES", *sorted(m for m in ("httpx", "httpx._main", "click", "pygments")'
    report += " if sys.modules.get(m) is not None)))\n"
    missing = str(ROOT / "no-such-dependencies.json")
    probe = PROBE.replace("import atexit, sys\n", "import atexit, sys\n" + report, 1)
    done = run_probe(probe, "watch", "--deps", missing)
    assert done.returncode == 2 and "no-such-dependencies.json" in done.stderr, done
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("MODULES")]
    assert line.split()[1:] == ["httpx"], done.stdout


#: Imports the CLI package and runs ``main()``; prints the collector's state after the package's import and at exit.
GC_PROBE = """
import atexit, gc, sys
if "off" in sys.argv:
    sys.argv.remove("off")
    gc.disable()
from coordinator.cli.entry import main
imported = (gc.isenabled(), gc.get_freeze_count())
atexit.register(lambda: print("GC", *imported, gc.isenabled(), gc.get_freeze_count()))
sys.argv = ["coordinator", *sys.argv[1:]]
main()
"""


def gc_states(*args: str) -> tuple[bool, int, bool, int]:
    """The collector on and objects frozen after the CLI package's import, then at the exit of ``main()``."""
    done = run_probe(GC_PROBE, *args, "watch", "--deps", str(ROOT / "no-such-dependencies.json"))
    assert done.returncode == 2 and "no-such-dependencies.json" in done.stderr, done
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("GC")]
    on, frozen, on_at_exit, frozen_at_exit = line.split()[1:]
    return on == "True", int(frozen), on_at_exit == "True", int(frozen_at_exit)


def test_the_start_imports_with_the_collector_off_then_frozen_and_on_again() -> None:
    """A command's imports (the CLI package's, then the command module's in ``main()``) leave the cyclic GC on and
    what they made frozen, more after the command module; a process whose GC was off keeps it off, nothing frozen."""
    on, frozen, on_at_exit, frozen_at_exit = gc_states()
    assert on and on_at_exit and 10_000 < frozen < frozen_at_exit, (frozen, frozen_at_exit)
    assert gc_states("off") == (False, 0, False, 0)


def test_the_help_and_a_typo_see_every_command() -> None:
    """``coordinator --help`` lists commands of every module, and a misspelt command is answered with the command it
    was meant to be: both load every command module."""
    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    listed = ("watch", "doctor", "import-dags", "lineage", "trigger")
    assert all(name in helped.stdout for name in listed), helped.stdout
    assert loaded(helped) == set(COMMAND_MODULES.values())
    typo = run("wacth")
    assert typo.returncode == 2 and "watch" in typo.stderr, typo.stderr
    assert loaded(typo) == set(COMMAND_MODULES.values())
