"""A real ``dbt-ol build`` (openlineage-dbt over dbt-duckdb, devtools/dbt_stack.py) against a capture server.

The capture server is stdlib ``http.server`` on 127.0.0.1 (a port the OS picks) in a thread: it answers 200 to
everything and records method, path, headers and JSON body. What it records is what a receiver of dbt's lineage
gets; the facts asserted here are written down in devtools/dbt_stack.py's docstring.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools import dbt_stack, tool_venv
from devtools.dbt_stack import (
    MODELS,
    PARENT_JOB,
    composite_config,
    dbt_project,
    ensure_venv,
    model_job,
    run_dbt_ol,
)

API_KEY = "test-key-7f3a"
NAMESPACE = "lineage-e2e"
LINEAGE_PATH = "/api/v1/lineage"
# The exact job names dbt-ol 1.54 gave the jaffle models (database "jaffle" from jaffle.duckdb, schema "main").
STG_ORDERS_JOB = "jaffle.main.jaffle.stg_orders.build.run"
ORDERS_JOB = "jaffle.main.jaffle.orders.build.run"
CUSTOMERS_JOB = "jaffle.main.jaffle.customers.build.run"
MODEL_JOBS = (STG_ORDERS_JOB, ORDERS_JOB, CUSTOMERS_JOB)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class CaptureServer:
    """Records every request; answers 200 ``{}``. ``url`` is ``http://127.0.0.1:<port>``."""

    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CaptureServer:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                with capture._lock:
                    capture.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
                payload = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="capture-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.method == "POST" and r.path == LINEAGE_PATH]


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dbt_venv() -> Path:
    return ensure_venv()


def _run(venv: Path, project: Path, url: str | None, **kwargs: Any) -> None:
    done = run_dbt_ol(venv, project, url=url, api_key=API_KEY if url else None, namespace=NAMESPACE, **kwargs)
    expected_rc = 1 if kwargs.get("vars", {}).get("fail_model") else 0
    assert done.returncode == expected_rc, done.stdout[-3000:] + done.stderr[-3000:]


def _timeline(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["eventType"], e["job"]["name"]) for e in events]


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _execute_timing(project: Path) -> dict[str, tuple[datetime, datetime]]:
    """Each model's own execute start and end, from dbt's run_results.json."""
    results = json.loads((project / "target" / "run_results.json").read_text(encoding="utf-8"))
    timings = {}
    for result in results["results"]:
        execute = [t for t in result["timing"] if t["name"] == "execute"]
        if execute:
            timings[result["unique_id"].split(".")[-1]] = (
                _when(execute[0]["started_at"]),
                _when(execute[0]["completed_at"]),
            )
    return timings


@pytest.mark.e2e
def test_build_sends_parent_and_model_events_in_order_with_bearer_auth(
    dbt_venv: Path, capture: CaptureServer, tmp_path: Path
) -> None:
    """dbt-ol build POSTs to /api/v1/lineage with the bearer key: parent START, per model START+COMPLETE, parent
    COMPLETE, all in the namespace; model events carry the model's own run times and a parent facet naming the run."""
    project = dbt_project(tmp_path / "jaffle")
    _run(dbt_venv, project, capture.url)

    assert {(r.method, r.path) for r in capture.requests} == {("POST", LINEAGE_PATH)}
    assert {r.headers.get("Authorization") for r in capture.requests} == {f"Bearer {API_KEY}"}
    events = capture.events()
    assert tuple(model_job(m) for m in MODELS) == MODEL_JOBS
    # Sent after dbt finished: every model's START (in run order), then every model's end, not START/COMPLETE pairs.
    assert _timeline(events) == [
        ("START", PARENT_JOB),
        ("START", STG_ORDERS_JOB),
        ("START", ORDERS_JOB),
        ("START", CUSTOMERS_JOB),
        ("COMPLETE", STG_ORDERS_JOB),
        ("COMPLETE", ORDERS_JOB),
        ("COMPLETE", CUSTOMERS_JOB),
        ("COMPLETE", PARENT_JOB),
    ]
    assert {e["job"]["namespace"] for e in events} == {NAMESPACE}

    parent_run = events[0]["run"]["runId"]
    assert events[-1]["run"]["runId"] == parent_run
    assert "parent" not in events[0]["run"]["facets"]  # dbt-ol started from no orchestrator
    model_events = events[1:-1]
    starts, ends = model_events[:3], model_events[3:]
    for start, end in zip(starts, ends, strict=True):
        assert start["run"]["runId"] == end["run"]["runId"] != parent_run
    run_ids = {e["run"]["runId"] for e in events}
    assert len(run_ids) == 4
    assert all(uuid.UUID(r).version == 7 for r in run_ids)
    for event in model_events:
        parent = event["run"]["facets"]["parent"]
        assert parent["run"] == {"runId": parent_run}
        assert parent["job"] == {"namespace": NAMESPACE, "name": PARENT_JOB}
        assert parent["root"] == {"run": {"runId": parent_run}, "job": {"namespace": NAMESPACE, "name": PARENT_JOB}}
    assert not [e for e in events if "nominalTime" in e["run"]["facets"]]

    # A model's START/COMPLETE eventTime is its own execute start/end from run_results.json, not the emission time.
    timings = _execute_timing(project)
    for model, start, end in zip(MODELS, starts, ends, strict=True):
        assert (_when(start["eventTime"]), _when(end["eventTime"])) == timings[model]
    # One dbt invocation: its id rides on every event (dbt_run facet), the parent's too.
    assert len({e["run"]["facets"]["dbt_run"]["invocation_id"] for e in events}) == 1
    # The parent's START was stamped before dbt ran, its COMPLETE after: they bracket every model.
    first_model_start = min(t[0] for t in timings.values())
    last_model_end = max(t[1] for t in timings.values())
    assert _when(events[0]["eventTime"]) < first_model_start
    assert _when(events[-1]["eventTime"]) > last_model_end


@pytest.mark.e2e
def test_a_failing_model_sends_fail_for_itself_and_the_parent_and_complete_for_the_others(
    dbt_venv: Path, capture: CaptureServer, tmp_path: Path
) -> None:
    """With --vars {fail_model: customers}: FAIL for customers and for dbt-run-jaffle, COMPLETE for the other models."""
    project = dbt_project(tmp_path / "jaffle")
    _run(dbt_venv, project, capture.url, vars={"fail_model": "customers"})

    events = capture.events()
    assert _timeline(events) == [
        ("START", PARENT_JOB),
        ("START", STG_ORDERS_JOB),
        ("START", ORDERS_JOB),
        ("START", CUSTOMERS_JOB),
        ("COMPLETE", STG_ORDERS_JOB),
        ("COMPLETE", ORDERS_JOB),
        ("FAIL", CUSTOMERS_JOB),
        ("FAIL", PARENT_JOB),
    ]
    assert {r.headers.get("Authorization") for r in capture.requests} == {f"Bearer {API_KEY}"}
    assert {e["job"]["namespace"] for e in events} == {NAMESPACE}
    fail = events[6]
    assert fail["outputs"] == []  # a failed model names no output dataset
    assert fail["run"]["runId"] == events[3]["run"]["runId"]
    assert fail["run"]["facets"]["parent"]["run"]["runId"] == events[0]["run"]["runId"] == events[7]["run"]["runId"]
    assert _when(fail["eventTime"]) == _execute_timing(project)["customers"][1]  # its own end, as for COMPLETE


@pytest.mark.e2e
def test_a_failing_first_model_sends_nothing_for_the_models_dbt_skipped(
    dbt_venv: Path, capture: CaptureServer, tmp_path: Path
) -> None:
    """With stg_orders failing, dbt skips orders and customers and dbt-ol sends no event at all for them."""
    project = dbt_project(tmp_path / "jaffle")
    _run(dbt_venv, project, capture.url, vars={"fail_model": "stg_orders"})

    assert _timeline(capture.events()) == [
        ("START", PARENT_JOB),
        ("START", STG_ORDERS_JOB),
        ("FAIL", STG_ORDERS_JOB),
        ("FAIL", PARENT_JOB),
    ]


@pytest.mark.e2e
def test_composite_config_tees_every_event_to_two_receivers_with_their_own_keys(dbt_venv: Path, tmp_path: Path) -> None:
    """composite_config + OPENLINEAGE_CONFIG: both receivers get the same 8 events, each with its own bearer key."""
    first, second = CaptureServer().start(), CaptureServer().start()
    try:
        config = composite_config(tmp_path / "openlineage.yml", [(first.url, "key-one"), (second.url, "key-two")])
        project = dbt_project(tmp_path / "jaffle")
        _run(dbt_venv, project, None, openlineage_config=config)
        assert len(first.events()) == 8
        assert first.events() == second.events()
        assert {r.headers.get("Authorization") for r in first.requests} == {"Bearer key-one"}
        assert {r.headers.get("Authorization") for r in second.requests} == {"Bearer key-two"}
    finally:
        first.stop()
        second.stop()


def test_the_project_copy_is_fresh_and_its_profile_points_inside_it(tmp_path: Path) -> None:
    """dbt_project copies the jaffle project and writes a dbt-duckdb profile whose database file is inside dest."""
    project = dbt_project(tmp_path / "p")
    profile = json.loads((project / "profiles.yml").read_text(encoding="utf-8"))
    assert profile["jaffle"]["outputs"]["dev"] == {
        "type": "duckdb",
        "path": str(project / "jaffle.duckdb"),
        "threads": 1,
    }
    assert sorted(p.name for p in (project / "models").iterdir()) == ["customers.sql", "orders.sql", "stg_orders.sql"]
    with pytest.raises(dbt_stack.DbtStackError):
        dbt_project(project)  # not empty any more


def test_the_environment_drops_inherited_openlineage_and_dbt_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_dbt_ol's environment: no inherited OPENLINEAGE_*/DBT_*, the venv first on PATH, a private HOME."""
    monkeypatch.setenv("OPENLINEAGE_URL", "http://elsewhere.invalid")
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", "ns/job/run")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "console")
    monkeypatch.setenv("DBT_PROFILES_DIR", "/nowhere")
    venv = tmp_path / "venv"
    env = dbt_stack.dbt_environment(venv, tmp_path, url=None, api_key=None, namespace="ns")
    assert {k for k in env if k.startswith("OPENLINEAGE")} == {"OPENLINEAGE_NAMESPACE"}
    assert env["DBT_PROFILES_DIR"] == str(tmp_path)
    assert env["PATH"].split(":")[0] == str(venv / "bin")
    assert env["HOME"] == str(tmp_path / ".home")
    config = composite_config(tmp_path / "ol.yml", [("http://127.0.0.1:1", "k")])
    env = dbt_stack.dbt_environment(
        venv, tmp_path, url="http://127.0.0.1:2", api_key="a", namespace="ns", openlineage_config=config
    )
    assert (env["OPENLINEAGE_URL"], env["OPENLINEAGE_API_KEY"], env["OPENLINEAGE_CONFIG"]) == (
        "http://127.0.0.1:2",
        "a",
        str(config),
    )


def test_the_venv_is_built_once_and_rebuilt_when_the_pins_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ensure_venv installs on first use, reuses while the pins hold, rebuilds after a change or a lost stamp."""
    built: list[Path] = []

    def fake_install(venv: Path, requirements: Any, constraints: Path | None, *options: Any) -> None:
        assert sorted(p.name for p in venv.iterdir()) == [".build.lock", ".gitignore"]  # emptied first
        built.append(venv)
        (venv / "bin").mkdir()
        for program in ("python", "dbt", "dbt-ol"):
            (venv / "bin" / program).touch()

    monkeypatch.setattr(tool_venv, "_install", fake_install)
    pins = tmp_path / "constraints" / "dbt.txt"
    pins.parent.mkdir()
    pins.write_text("dbt-core==1.11.16\n", encoding="utf-8")
    venv = tmp_path / ".venv-dbt"
    assert ensure_venv(tmp_path) == ensure_venv(tmp_path) == venv
    pins.write_text("dbt-core==1.11.16\nduckdb==2.0.1\n", encoding="utf-8")
    ensure_venv(tmp_path)
    (venv / tool_venv.FINGERPRINT_FILE).unlink()
    ensure_venv(tmp_path)
    assert built == [venv, venv, venv]
    assert (venv / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == "*"
