"""``python -m coordinator.airflow_import FOLDER``: load FOLDER with this interpreter's Airflow, answer in JSON.

The child side of :mod:`coordinator.airflow_import.process`: it runs in the estate's interpreter (``--python``) or
in the CLI's own. Its stdout holds one JSON document (:mod:`coordinator.airflow_import.wire`) and nothing else;
Airflow's own output goes to stderr, which the CLI shows only with ``--verbose``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from coordinator.airflow_import import wire
from coordinator.airflow_import.loader import load_folder
from coordinator.errors import ConfigError


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m coordinator.airflow_import FOLDER\n")
        return 2
    try:
        text = wire.dumps(load_folder(Path(argv[1])))
    except ConfigError as exc:
        text = json.dumps({"error": str(exc)})
    sys.stdout.write(wire.ANSWER + text + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
