"""The watcher's log at INFO, as a person reads it: one line per decision or effect, the passes summarised, no line
twice; and the healthy minute that docs/howto/monitor.md shows is this scenario's log."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.scenario.conftest import LAST, ROOT_DAG, Stack, new_partition

pytestmark = pytest.mark.scenario

ROOT = Path(__file__).resolve().parents[2]
MONITOR = ROOT / "docs" / "howto" / "monitor.md"
#: The start of a log line: its time, as ``setup_logging`` writes it.
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def _cascade_log(stack: Stack) -> list[str]:
    """The INFO log of one watcher through the seven-DAG cascade and a clear of its root, stopped: its lines without
    their times."""
    p = new_partition()
    watcher = stack.start_watcher(ready="none", log_level="INFO")
    watcher.wait_log(r"graph\.adopted ")
    stack.trigger_root(p)
    stack.wait_success(LAST, p)
    stack.settle()
    stack.fake.clear_run(ROOT_DAG, f"scheduled__{p}")
    stack.wait_success(LAST, p, attempt=1)
    stack.settle()
    assert watcher.stop() == 0
    return [_STAMP.sub("", line) for line in watcher.log().splitlines() if _STAMP.match(line)]


def _shape(line: str) -> str:
    """A line with what changes from run to run (numbers, digests, the test's prefix and paths) made constant."""
    line = re.sub(r"/t-[0-9a-f]+", "/PREFIX", line)
    line = re.sub(r"deps=\S+", "deps=DEPS", line)
    line = re.sub(r"\b(lease|digest)=[0-9a-f]+", r"\1=HEX", line)  # hex of any length (no leading zeros)
    return re.sub(r"\d+(\.\d+)?", "N", line)


def _documented() -> list[str]:
    """The lines of the healthy minute in docs/howto/monitor.md (the fenced block after its heading)."""
    text = MONITOR.read_text(encoding="utf-8")
    section = text[text.index("### A healthy minute") :]
    block = section[section.index("```text\n") + len("```text\n") :]
    return [_STAMP.sub("", line) for line in block[: block.index("```")].splitlines()]


def test_info_log_says_each_decision_and_effect_once_and_summarises_the_passes(stack: Stack) -> None:
    """At INFO no pass has a line of its own, no line appears twice, every intent has its effect, and the summary
    lines count every pass the watcher ran."""
    lines = _cascade_log(stack)
    assert not [line for line in lines if "reconcile revision=" in line]
    twice = [line for line, n in Counter(lines).items() if n > 1]
    assert twice == [], twice
    intents = [line for line in lines if "actuator.intent " in line]
    effects = [line for line in lines if re.search(r"actuator\.(created|cleared|already_cleared) ", line)]
    assert len(intents) == len(effects) == 12, lines  # six DAGs created, then six cleared
    summaries = [line for line in lines if "reconcile.summary " in line]
    (stopped,) = [line for line in lines if "watcher.stopped " in line]
    passes = sum(int(re.search(r"passes=(\d+)", line).group(1)) for line in summaries)  # type: ignore[union-attr]
    assert summaries and passes == int(re.search(r"passes=(\d+)", stopped).group(1))  # type: ignore[union-attr]


def test_the_documented_healthy_minute_is_this_scenarios_log(stack: Stack) -> None:
    """docs/howto/monitor.md's healthy minute has the lines this scenario logs at INFO, in number and in kind (numbers,
    digests and paths aside, in any order: the four actions of one depth run at once; the summary lines aside, whose
    number depends on how long the run took)."""
    lines = _cascade_log(stack)
    # The summary's count of lines depends on how many minutes the run took (one at the stop, one a minute before it).
    ours = Counter(_shape(line) for line in lines if "reconcile.summary " not in line)
    documented = Counter(_shape(line) for line in _documented() if "reconcile.summary " not in line)
    assert any("reconcile.summary " in line for line in _documented())
    assert documented == ours, (
        f"docs/howto/monitor.md's healthy minute differs from this run: only in the page {documented - ours}, only in "
        f"the log {ours - documented}; paste the log below (with its times):\n" + "\n".join(lines)
    )
