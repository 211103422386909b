"""``coordinator``'s entry point: an error that escapes a command is a message and an exit code, never a traceback."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import typer

from coordinator.errors import SpecError

# The module, not the Typer object that ``coordinator.cli`` exports under the same name.
app_module = importlib.import_module("coordinator.cli.entry")
# main() imports the command modules, which register on ``app``: done here, before the test replaces ``app`` (every
# ``*_cmds`` module of the package, so a new command module cannot slip past).
for _module in pkgutil.iter_modules(importlib.import_module("coordinator.cli").__path__):
    if _module.name.endswith("_cmds"):
        importlib.import_module(f"coordinator.cli.{_module.name}")


def _raising(exc: BaseException) -> object:
    def call() -> None:
        raise exc

    return call


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (SpecError(["import: the loader kept rejecting edges"]), 2, "kept rejecting edges"),
        (RuntimeError("boom"), 2, "unexpected RuntimeError: boom"),
    ],
    ids=["spec-error", "unexpected-error"],
)
def test_an_error_escaping_a_command_exits_with_a_message_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int, words: str
) -> None:
    """main() turns an escaped error into `error: ...` on stderr and an exit code (before: a typer.Exit traceback)."""
    monkeypatch.delenv("COORDINATOR_TRACEBACK", raising=False)
    monkeypatch.setattr(app_module, "app", _raising(exc))
    with pytest.raises(SystemExit) as exited:
        app_module.main()
    assert exited.value.code == code
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and words in stderr
    assert "Traceback" not in stderr


def test_no_help_page_shows_a_type_beside_a_flag() -> None:
    """`coordinator --help` and every command's help list their flags without a "<bool>" beside them (a flag takes
    no value), while options that take one show what to type (e.g. "PARTITION")."""
    from typer.testing import CliRunner

    from coordinator.cli import app

    runner = CliRunner()
    group = typer.main.get_command(app)
    pages = {"coordinator": runner.invoke(app, ["--help"], terminal_width=200)}
    for name in group.commands:  # type: ignore[attr-defined]
        pages[name] = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert len(pages) > 15
    for name, page in pages.items():
        assert page.exit_code == 0, (name, page.output)
        assert "--help" in page.output and "<bool>" not in page.output, (name, page.output)
    assert "PARTITION" in pages["status"].output
