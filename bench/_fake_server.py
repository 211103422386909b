"""The recording fake Airflow as a process of its own, driven by ``_harness.FakeAirflowProcess`` over stdin/stdout.

Protocol (one line each way): the parent writes the comma-separated DAG ids; this process answers with its URL. Then
``count`` -> the number of trigger arrivals so far, ``arrivals`` -> ``[[dag_id, logical_date, monotonic], ...]``
(JSON); EOF on stdin stops the server.
"""

from __future__ import annotations

import argparse
import json
import sys

import _harness as h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-alive", action="store_true")
    args = parser.parse_args()
    dags = [d for d in sys.stdin.readline().strip().split(",") if d]
    with h.recording_fake_airflow(dags, keep_alive=args.keep_alive) as fake:
        print(fake.url, flush=True)
        for line in sys.stdin:
            command = line.strip()
            with fake.arrival_lock:
                if command == "count":
                    answer: object = len(fake.arrivals)
                elif command == "arrivals":
                    answer = [[dag, ld, at] for (dag, ld), at in fake.arrivals.items()]
                else:
                    answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
