"""One running oracle (``tests/support/oracle_server.py``) per test module: Airflow imported once, asked many times.

The answers are those of ``tests/import_dags/oracle.py`` (the server runs its ``main()`` per question); only the
process is shared. Airflow still runs in a subprocess of its own environment, never in the test process.
"""

from __future__ import annotations

import json
import select
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

SERVER = Path(__file__).with_name("oracle_server.py")
#: As long as one oracle process was given per question before (hundreds of dates for a dozen sensors).
ASK_TIMEOUT_S = 600.0
#: Closing stdin ends the server's loop; it has nothing left to do but exit.
CLOSE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Oracle:
    """A running oracle: ``ask`` sends one question and waits for its answer."""

    process: subprocess.Popen[str]
    log: Path

    def _log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]

    def ask(self, folder: Path, requests: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        """(dag, task) -> {partition: the dates Airflow's sensor waits for} for the DAGs of ``folder``."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"folder": str(folder), "requests": requests}) + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], ASK_TIMEOUT_S)
        assert ready, f"the oracle gave no answer in {ASK_TIMEOUT_S:.0f} s; its log:\n{self._log_tail()}"
        line = stdout.readline()
        assert line, f"the oracle exited (code {self.process.poll()}); its log:\n{self._log_tail()}"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"][-3000:]
        return {(a["dag"], a["task"]): a["dates"] for a in answer["answers"]}


@contextmanager
def running_oracle(python: Path, env: Mapping[str, str], log: Path) -> Iterator[Oracle]:
    """The oracle server under ``python`` (an Airflow environment's), its Airflow output in ``log``; stopped on
    exit."""
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [str(python), str(SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            env=dict(env),
            text=True,
        )
        try:
            yield Oracle(process, log)
        finally:
            _stop(process, process.stdin)


def _stop(process: subprocess.Popen[str], stdin: IO[str] | None) -> None:
    if stdin is not None:
        stdin.close()
    try:
        process.wait(timeout=CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=CLOSE_TIMEOUT_S)
    if process.stdout is not None:
        process.stdout.close()
