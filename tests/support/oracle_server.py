"""The import-dags oracle kept running: ``tests/import_dags/oracle.py`` answering one question per stdin line, so a
test module pays Airflow's import (seconds of CPU) once instead of once per question.

Run with the Python of an Airflow environment: ``python oracle_server.py``. Each stdin line is
``{"folder": ..., "requests": [...]}``: the folder oracle.py takes as its argument and the requests it reads from
stdin. Each answer is one line on the original stdout: oracle.py's own last line (``{"airflow", "answers"}``), or
``{"error": traceback}``. Rules:

1. The answers are oracle.py's ``main()`` itself, run per question with its argv, stdin and stdout swapped: a fresh
   DagBag each time, the same code path as one process per question.
2. Airflow's logging writes to stdout; file descriptor 1 is pointed at stderr before Airflow is imported, so nothing
   but answers reaches the channel the tests read.
3. Like oracle.py it imports nothing of the coordinator (the Airflow 2 venv may not hold it).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import sys
import traceback
from pathlib import Path

ORACLE = Path(__file__).resolve().parent.parent / "import_dags" / "oracle.py"


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    spec = importlib.util.spec_from_file_location("import_dags_oracle", ORACLE)
    assert spec is not None and spec.loader is not None
    oracle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle)
    questions, stdout = sys.stdin, sys.stdout
    for line in questions:
        question = json.loads(line)
        captured = io.StringIO()
        sys.argv = [str(ORACLE), question["folder"]]
        sys.stdin, sys.stdout = io.StringIO(json.dumps(question["requests"])), captured
        try:
            oracle.main()
        except Exception:  # the test reports it; the next question gets a fresh DagBag
            reply = json.dumps({"error": traceback.format_exc()})
        else:
            reply = captured.getvalue().strip().splitlines()[-1]
        finally:
            sys.stdin, sys.stdout = questions, stdout
        answers.write(reply + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
