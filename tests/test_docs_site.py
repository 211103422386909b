"""The documentation site (``make docs``): it builds with warnings as errors, its generated reference pages list what
the code has, every link between its pages and from the README resolves, and the README stays a short front page."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

REPO = Path(__file__).resolve().parents[1]
#: The README is the project's front page (the pitch, the two commands, install, links); the rest lives in the site.
README_MAX_BYTES = 15 * 1024
#: The benchmarks page: the current result per benchmark, machine and command; earlier ones are in the commits.
BENCHMARKS_MAX_BYTES = 30_000


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """What `make docs` runs: warnings are errors, unresolved references are warnings (-n)."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(source), str(out)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The site built from this checkout's docs/ into a temporary directory."""
    out = tmp_path_factory.mktemp("site")
    result = sphinx_build(REPO / "docs", out)
    assert result.returncode == 0, f"make docs failed:\n{result.stdout}\n{result.stderr}"
    yield out


def app_commands() -> list[str]:
    """Every command path of the app as the console script registers it (``coordinator.cli.entry.main``'s imports)."""
    from coordinator.cli.app import app
    from coordinator.cli.entry import main

    argv = sys.argv
    sys.argv = ["coordinator", "--help"]
    try:
        with pytest.raises(SystemExit):
            main()
    finally:
        sys.argv = argv
    paths: list[str] = []

    def walk(command: object, path: str) -> None:
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            if not getattr(sub, "hidden", False):
                paths.append(f"{path} {name}")
                walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "coordinator")
    return paths


def test_the_site_builds_with_warnings_as_errors(site: Path) -> None:
    """The site builds without a warning and has the four sections' pages."""
    for page in ("index", "tutorial", "howto/existing-airflow", "reference/cli", "reference/settings",
                 "explanation/how-it-works", "operations", "semantics", "howto/etcd", "howto/monitor",
                 "howto/etcd-roles", "howto/openlineage-receiver", "explanation/deployment"):  # fmt: skip
        assert (site / f"{page}.html").is_file(), page


def test_the_readme_is_at_most_15_kb() -> None:
    """README.md is at most 15 KB and still gives the two commands."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= README_MAX_BYTES
    assert "make demo" in text and "make test" in text


def test_the_benchmarks_page_is_at_most_30_kb() -> None:
    """docs/benchmarks.md holds the current result of each benchmark in at most 30 KB (history stays in the commits)
    and keeps the markers `make bench` rewrites between."""
    text = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= BENCHMARKS_MAX_BYTES
    assert "<!-- bench:results:begin -->" in text and "<!-- bench:results:end -->" in text


def test_the_cli_reference_lists_every_command(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI reference has a section, with its usage line, for every command the console script registers."""
    commands = app_commands()
    capsys.readouterr()  # the --help the registration printed
    assert len(commands) > 20, commands
    html = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    for path in commands:
        anchor = path.replace(" ", "-")
        assert f'id="{anchor}"' in html, f"no section for {path}"
        assert f"Usage: {path} " in html, f"no usage line for {path}"


def test_the_settings_reference_lists_every_variable(site: Path) -> None:
    """The settings reference names the COORDINATOR_* variable and default of every field of the settings model."""
    from coordinator.runtime.settings import Settings

    html = (site / "reference" / "settings.html").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert f"COORDINATOR_{name.upper()}" in html, name
        if isinstance(field.default, (int, float, str)) and not isinstance(field.default, bool):
            assert f'<code class="docutils literal notranslate"><span class="pre">{field.default}' in html, name


def test_the_schema_reference_has_every_definition(site: Path) -> None:
    """The dependencies.json schema page has a section for every definition of the schema the code validates with."""
    from coordinator.core.spec.schema import json_schema

    html = (site / "reference" / "dependencies-schema.html").read_text(encoding="utf-8")
    for name in json_schema()["$defs"]:
        assert f'id="{name.lower()}"' in html, name


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """A README link to a heading that does not exist, and a page's link to a missing page, each fail the build by
    name."""
    # The site's own configuration and extensions on two pages: what turns a broken link into a failed build is the
    # configuration, and a copy of every page cost a second full build (~6 s of CPU).
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(REPO / "docs" / "conf.py", docs / "conf.py")
    shutil.copytree(REPO / "docs" / "_ext", docs / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    (docs / "index.md").write_text("# Site\n\n```{toctree}\ntutorial\n```\n", encoding="utf-8")
    (docs / "tutorial.md").write_text("# Tutorial\n\n## A heading\n\n[gone](howto/no-such-page.md)\n", encoding="utf-8")
    readme = "# Readme\n\n[here](docs/tutorial.md#a-heading)\n[gone](docs/tutorial.md#no-such-heading)\n"
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    result = sphinx_build(docs, tmp_path / "out")
    assert result.returncode != 0
    assert "README link docs/tutorial.md#no-such-heading" in result.stderr
    assert "README link docs/tutorial.md#a-heading" not in result.stderr
    assert "no-such-page" in result.stderr
