"""``coordinator graph`` draws condition groups as groups (text, Mermaid, dot): ``any``, ``at_least`` and a cutoff are
one joint labelled with the rule that the members feed, never plain edges to the dependent, which read as "all of";
required edges beside a group are drawn as before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coordinator.cli import spec_cmds  # registers `graph` on the app
from coordinator.cli.app import app

assert spec_cmds
DAGS = {
    "report": {"upstreams": ["calendar", {"any": ["primary", "fallback"]}]},
    "rollup": {"upstreams": [{"all": ["eu", "us", "apac"], "cutoff": "6h", "min": 2}]},
    "x": {"upstreams": [{"at_least": 2, "of": ["eu", {"dag": "us", "task": "load"}, "apac"]}]},
}


def graph(tmp_path: Path, fmt: str) -> list[str]:
    deps = tmp_path / "deps.json"
    deps.write_text(json.dumps({"version": 1, "dags": DAGS}))
    result = CliRunner().invoke(app, ["graph", str(deps), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_text_writes_each_group_with_its_rule(tmp_path: Path) -> None:
    """The text lines say 'calendar, any of (fallback, primary)', '2 of 3 (apac, eu, us [task load])' and
    '3 of 3, 2 after cutoff 6h (apac, eu, us)'."""
    lines = graph(tmp_path, "text")
    assert "report <- calendar, any of (fallback, primary)" in lines, lines
    assert "x <- 2 of 3 (apac, eu, us [task load])" in lines, lines
    assert "rollup <- 3 of 3, 2 after cutoff 6h (apac, eu, us)" in lines, lines


@pytest.mark.parametrize(
    ("fmt", "ids", "member", "onward"),
    [
        pytest.param(
            "mermaid",
            r'^\s+(n\d+)\["([^"]+)"\]$',
            r"^\s+(\w+) --- (\w+)$",
            r"^\s+(\w+) --> (\w+)$",
            id="mermaid",
        ),
        pytest.param(
            "dot",
            r'^\s+"([^"#]+)" \[label="([^"]+)"\];$',
            r'^\s+"([^"]+)" -> "([^"]+)" \[arrowhead=none\];$',
            r'^\s+"([^"]+)" -> "([^"]+)";$',
            id="dot",
        ),
    ],
)
def test_mermaid_and_dot_draw_one_joint_per_group(tmp_path: Path, fmt: str, ids: str, member: str, onward: str) -> None:
    """Each group is one joint labelled 'any' / '2 of 3' / '3 of 3, 2 after cutoff 6h': its members' edges end at it
    without an arrow, one arrow goes on to the dependent, and no member points at the dependent itself; calendar
    (required) still points at report."""
    lines = graph(tmp_path, fmt)
    name = {m.group(1): m.group(2) for line in lines if (m := re.match(ids, line))}
    joints = {
        m.group(1).strip('"'): m.group(2)
        for line in lines
        if (m := re.match(r'^\s+(\S+)(?:\{\{| \[shape=hexagon, label=)"([^"]+)"', line))
    }
    assert sorted(joints.values()) == ["2 of 3", "3 of 3, 2 after cutoff 6h", "any"], lines
    feeds: dict[str, set[str]] = {}
    arrows: set[tuple[str, str]] = set()
    for line in lines:
        if m := re.match(member, line):
            feeds.setdefault(joints[m.group(2).strip('"')], set()).add(name[m.group(1).strip('"')])
        elif m := re.match(onward, line):
            source, target = m.group(1).strip('"'), m.group(2).strip('"')
            arrows.add((joints.get(source) or name[source], name[target]))
    assert feeds == {"any": {"primary", "fallback"}, "2 of 3": {"eu", "us", "apac"},
                     "3 of 3, 2 after cutoff 6h": {"eu", "us", "apac"}}  # fmt: skip
    assert arrows == {
        ("calendar", "report"),
        ("any", "report"),
        ("2 of 3", "x"),
        ("3 of 3, 2 after cutoff 6h", "rollup"),
    }
