"""The reference pages in the checkout (docs/reference/*.md) hold their generated text, as the code writes it now, and
the settings page names every variable the code reads (devtools/reference_pages.py, docs/_ext/coordinator_reference.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from coordinator.airflow_plugin.config import SETTINGS as PLUGIN_SETTINGS
from coordinator.airflow_plugin.config import env_var
from coordinator.runtime.settings import Settings
from devtools import dist, reference_pages

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PAGE = ROOT / "docs" / "reference" / "settings.md"
#: A variable named in the code: a whole name, not the start of a family (``COORDINATOR_ETCD_*``, ``_{name}``) nor
#: Airflow's form of an option (``AIRFLOW__COORDINATOR__...``).
_NAMED = re.compile(r"(?<![A-Z_])COORDINATOR_[A-Z0-9]+(?:_[A-Z0-9]+)*(?![A-Z0-9_*{<])")


def read_variables() -> set[str]:
    """Every ``COORDINATOR_*`` variable the code reads: the settings model's fields, each command option's variable,
    the plugin's settings, and every whole name the package's sources spell out."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = {f"{prefix}{field.upper()}" for field in Settings.model_fields}
    names |= {env_var(option) for setting in PLUGIN_SETTINGS for option in setting.options}
    reference = reference_pages.generator()
    root = reference.cli_group()
    ctx = root.context_class(root, info_name="coordinator")
    for command, sub in reference.walk_commands(root, ctx):
        for param in command.get_params(sub):
            variable = getattr(param, "envvar", None)
            if isinstance(variable, str):
                names.add(variable)
    for source in (ROOT / "coordinator").rglob("*.py"):
        names |= set(_NAMED.findall(source.read_text(encoding="utf-8")))
    return names


def test_the_committed_reference_pages_are_what_the_code_writes_now() -> None:
    """Each generated section of docs/reference/*.md is the text the code writes now; a stale page fails with the
    command that rewrites it."""
    stale = reference_pages.stale()
    assert not stale, (
        f"stale reference page(s): {', '.join(str(p.relative_to(ROOT)) for p in stale)}; run "
        f"{reference_pages.COMMAND} and commit the result"
    )


def test_every_variable_the_code_reads_is_on_the_settings_page() -> None:
    """A ``COORDINATOR_*`` variable the code reads (a setting, an option's variable, the plugin's, a name in the
    sources) that the settings page does not name fails, naming it."""
    page = SETTINGS_PAGE.read_text(encoding="utf-8")
    variables = read_variables()
    assert len(variables) > 50  # the finder found the settings, not nothing
    missing = sorted(v for v in variables if not re.search(rf"`{re.escape(v)}`|{re.escape(v)}=", page))
    assert missing == [], (
        f"{SETTINGS_PAGE.relative_to(ROOT)} does not name {', '.join(missing)}: give each a comment in "
        "coordinator/runtime/settings.py (a setting), a help text (an option), or a line under 'Variables read "
        f"elsewhere', then run {reference_pages.COMMAND}"
    )


def test_every_setting_on_the_page_has_a_default_and_a_meaning() -> None:
    """Each row of the settings table says its default (``none`` when unset) and what it is: no empty cell."""
    page = SETTINGS_PAGE.read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| `COORDINATOR_")]
    assert len(rows) >= len(Settings.model_fields)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert all(cells), row


def test_the_release_carries_the_reference_pages() -> None:
    """The examples archive of ``dist/`` holds docs/reference, so a user with ``dist/`` alone has the pages."""
    assert "docs/reference" in dist.EXAMPLES
    pages = [p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "reference").glob("*.md")]
    assert all("<!-- end generated:" in text for text in pages if "<!-- generated:" in text)
