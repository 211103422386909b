"""``coordinator validate`` warnings (coordinator.core.spec_warnings): exit 0, one stderr line each, with path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coordinator.core.spec import parse_spec
from coordinator.core.spec_warnings import SpecWarning, exact_dates_across_grids, spec_warnings
from tests.test_spec_cli import run


def warnings_of(dags: dict[str, Any]) -> list[SpecWarning]:
    doc = {"version": 1, "dags": dags}
    return spec_warnings(parse_spec(json.dumps(doc)), doc)


def test_an_exact_date_edge_with_one_grid_is_warned_at_its_path() -> None:
    """An edge without shift between a gridded and an ungridded DAG is named with its JSON path and a hint."""
    found = warnings_of({"u": {"partitions": {"cron": "0 1 * * *"}}, "x": {}, "d": {"upstreams": ["x", "u"]}})
    assert [w.path for w in found] == ["$.dags.d.upstreams[1]"]
    assert found[0].message == (
        "d waits for u on the exact same logical date, but only u has partitions (0 1 * * *): d is triggered at u's "
        "logical dates, which d's own schedule has only if the two schedules line up"
    )
    assert 'add "shift"' in found[0].hint and "coordinator inputs d -p DATE" in found[0].hint


def test_mapped_edges_and_same_sided_grids_are_not_warned() -> None:
    """Two grids, no grids, an explicit shift and a self gate are all deliberate: no warning."""
    assert (
        warnings_of(
            {
                "u": {"partitions": {"cron": "0 1 * * *"}},
                "a": {"partitions": {"cron": "@daily"}, "upstreams": ["u", {"dag": "a", "offset": -1}]},
                "b": {"upstreams": [{"dag": "u", "shift": "-1h"}, "c"]},
                "c": {},
            }
        )
        == []
    )
    assert exact_dates_across_grids(parse_spec('{"b": "a"}'), {"b": "a"}) == []


def test_validate_prints_warnings_on_stderr_and_exits_0(tmp_path: Path) -> None:
    """validate keeps exit 0 and the summary on stdout, and prints `file: path: warning: what — hint` on stderr."""
    path = tmp_path / "deps.json"
    dags = {"u": {"partitions": {"cron": "@hourly"}}, "d": {"upstreams": [{"dag": "u", "task": "load"}]}}
    path.write_text(json.dumps({"version": 1, "dags": dags}), encoding="utf-8")
    result = run("validate", str(path))
    assert result.returncode == 0 and result.stdout.endswith("valid — 2 DAGs, 1 edge, 1 root (u), 1 instance\n")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: $.dags.d.upstreams[0]: warning: d waits for u")
    assert " — declare " in lines[0]
