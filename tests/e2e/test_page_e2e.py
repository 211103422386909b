"""The dependencies page inside the real Airflow 3.3 of the session: refused to anonymous users, listed in Airflow's
navigation, and showing a cascade of the session graph move, over HTTP and in a real headless Chromium.

One cascade for the module (``cascade`` fixture): a watcher adopts ``SESSION_GRAPH``, 01_pipeline is triggered for a
fresh partition, and the page is read every half second until 07_pipeline succeeded.
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.core.assets import AssetEventFact, AssetKeys, DeliveryRecord, DeliveryStatus
from coordinator.core.model import RunState
from tests.e2e.chromium import INSTALL_HINT, chromium, find_chromium
from tests.e2e.harness import E2E, PIPELINES, SESSION_GRAPH

pytestmark = pytest.mark.e2e

#: Set to a path to keep the browser's screenshot (docs/dependencies-page.png was made this way).
SCREENSHOT_ENV = "E2E_PAGE_SCREENSHOT"
MOVING = {"triggered", "queued", "running", "due"}


def get(e2e: E2E, query: str = "", token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{e2e.stack.url}/coordinator/{query}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # http://127.0.0.1
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def states(html: str) -> dict[str, str]:
    """DAG id -> state, as drawn in the SVG (instance "default")."""
    return dict(re.findall(r'data-dag="default/([^"]+)" data-state="([^"]+)"', html))


@dataclass
class Cascade:
    partition: str
    token: str
    #: Every distinct (DAG states, refreshing) the page showed while the cascade ran, in order.
    seen: list[tuple[dict[str, str], bool]] = field(default_factory=list)


@pytest.fixture(scope="module")
def cascade(airflow_e2e: E2E) -> Iterator[Cascade]:
    e2e = airflow_e2e
    e2e.revive_if_needed()
    deps = e2e.write_dependencies(SESSION_GRAPH, name="page-session.json")
    try:
        e2e.start_watcher(deps, "--id", "page-watcher", name="page-watcher")
        e2e.wait_for_leader(deps, "page-watcher")
        result = Cascade(e2e.new_partition(), e2e.stack.login())
        query = "?" + urllib.parse.urlencode({"partition": result.partition})
        e2e.stack.trigger("01_pipeline", e2e.run_id("page"), result.partition)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status, html = get(e2e, query, result.token)
            assert status == 200, html
            snapshot = (states(html), 'http-equiv="refresh"' in html)
            if not result.seen or result.seen[-1] != snapshot:
                result.seen.append(snapshot)
            record, _ = e2e.read_run("07_pipeline", result.partition)
            if record is not None and record.state is RunState.SUCCESS:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"07_pipeline did not succeed in 240 s; pages seen: {result.seen[-3:]}")
        yield result
    finally:
        e2e.stop_watchers()


def test_anonymous_requests_are_refused(airflow_e2e: E2E) -> None:
    """Without a token the page answers 401 with a login link; a forged token gets 401/403; nothing is drawn."""
    status, html = get(airflow_e2e)
    assert status == 401
    assert "Log in" in html and "<svg" not in html
    forged, html = get(airflow_e2e, token="not-a-jwt")
    assert forged in (401, 403)
    assert "<svg" not in html


def test_the_page_is_in_airflows_navigation(airflow_e2e: E2E) -> None:
    """Airflow's plugin API lists the "Dependencies" navigation entry and the FastAPI app at /coordinator."""
    status, body = airflow_e2e.stack.request("GET", "/api/v2/plugins")
    assert status == 200, body
    (ours,) = [p for p in body["plugins"] if p["name"] == "etcd_coordinator"]
    assert [(v["name"], v["href"], v["destination"]) for v in ours["external_views"]] == [
        ("Dependencies", "/coordinator/", "nav")
    ]
    assert [app["url_prefix"] for app in ours["fastapi_apps"]] == ["/coordinator"]


#: The session graph's DAGs other than the pipelines, as the page shows them at the cascade's partition, where none
#: of them ran: roots "not run", dependents "waiting".
OTHER_DAGS = {
    "09_flaky": "not run",
    "08_on_failure": "waiting",
    "e2e_dependent": "waiting",  # on 09_flaky, which has not run
    "e2e_hourly": "not run",  # the grids module's hourly root: nothing at this partition
    "e2e_daily": "waiting",  # its daily rollup waits for the 24 hours of this day
    "e2e_shift_up": "not run",  # the edges module's DAGs (issue 16): nothing at this partition either
    "e2e_shift_down": "waiting",
    "e2e_task_up": "not run",
    "e2e_task_down": "waiting",
    "e2e_chain_root": "not run",
    "e2e_chain": "waiting",
}


def test_logged_in_page_follows_the_cascade(airflow_e2e: E2E, cascade: Cascade) -> None:
    """During the cascade the page refreshes itself and shows 06 waiting on its upstreams; afterwards every
    pipeline is succeeded, the other DAGs of the graph waiting or not run, and the page stops refreshing."""
    moving = [(s, refreshing) for s, refreshing in cascade.seen if MOVING & set(s.values())]
    assert moving, f"no page showed a moving cascade: {cascade.seen}"
    assert all(refreshing for _, refreshing in moving)
    assert any(s.get("06_pipeline") == "waiting" and s.get("01_pipeline") == "succeeded" for s, _ in cascade.seen)
    status, html = get(airflow_e2e, "?" + urllib.parse.urlencode({"partition": cascade.partition}), cascade.token)
    assert status == 200
    assert states(html) == {**dict.fromkeys(PIPELINES, "succeeded"), **OTHER_DAGS}
    assert 'http-equiv="refresh"' not in html
    assert "waiting on 09_flaky" in html


def test_clicking_a_dag_shows_why_the_ledger_and_the_run_link(airflow_e2e: E2E, cascade: Cascade) -> None:
    """A DAG's details: the why text, the coordinator's trigger (run id, inputs) and a link to its Airflow run."""
    query = "?" + urllib.parse.urlencode({"partition": cascade.partition, "node": "default/06_pipeline"})
    status, html = get(airflow_e2e, query, cascade.token)
    assert status == 200
    detail = html[html.index('id="detail"') :]
    assert "06_pipeline is up to date" in detail
    run_id = f"coordinator__{cascade.partition}"
    assert f"create {run_id} (done), coordinator trigger #1" in detail
    assert "run attempt 1, clear_number 0" in detail
    for upstream in PIPELINES[1:5]:
        assert f"default/{upstream} @ " in detail
    assert f'href="/dags/06_pipeline/runs/{urllib.parse.quote(run_id, safe="")}"' in detail


#: A shared asset the page draws (page.assets): made by 07_pipeline, delivered to an instance no route of the
#: session names (no watcher delivers or prunes it), so the test writes its ledger as the leader would have.
PAGE_ASSET, PAGE_TARGET = "s3://e2e/page-orders", "page_target"


@pytest.fixture
def shared_asset(airflow_e2e: E2E) -> Iterator[str]:
    """Two recorded events of PAGE_ASSET, the first delivered to PAGE_TARGET, the second refused there."""
    keys, at = AssetKeys(airflow_e2e.prefix), datetime.now(UTC)
    written = []
    for event_id, status in ((1, DeliveryStatus.DONE), (2, DeliveryStatus.ERROR)):
        fact = AssetEventFact(event_id=event_id, uri=PAGE_ASSET, timestamp=at, source_dag_id="07_pipeline")
        record = DeliveryRecord(status=status, source="default", event_id=event_id, uri=PAGE_ASSET, requested_at=at,
                                last_error="403 Forbidden" if status is DeliveryStatus.ERROR else None)  # fmt: skip
        for key, value in ((keys.event_key("default", PAGE_ASSET, event_id), fact),
                           (keys.delivery_key(PAGE_TARGET, "default", PAGE_ASSET, event_id), record)):  # fmt: skip
            airflow_e2e.put_key(key, value.model_dump_json().encode())
            written.append(key)
    yield f"default:{PAGE_ASSET}"
    for key in written:
        airflow_e2e.delete_key(key)


def test_chromium_renders_the_page_for_a_logged_in_user(
    airflow_e2e: E2E, cascade: Cascade, shared_asset: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real headless Chromium holding Airflow's login cookie renders the graph (DOM checked) with a shared asset
    as a node linked from its producer 07_pipeline and its target's counts, the asset's panel on a click, the page
    also inside Airflow's UI at the navigation entry's route, and takes screenshots; without the cookie it gets the
    login message."""
    binary = find_chromium()
    if binary is None:
        pytest.fail(INSTALL_HINT)
    url = airflow_e2e.stack.url
    page_url = f"{url}/coordinator/?" + urllib.parse.urlencode(
        {"partition": cascade.partition, "node": "default/06_pipeline"}
    )
    shot = tmp_path_factory.mktemp("screenshot") / "dependencies-page.png"
    with chromium(binary) as browser:
        anonymous = browser.load(page_url)
        assert "Log in to Airflow" in anonymous and "<svg" not in anonymous
        browser.set_cookie("_token", cascade.token, url)  # what Airflow's UI keeps after login
        dom = browser.load(page_url)
        browser.screenshot(shot)
        # The asset node is a link in the SVG: following it (as a click does) opens its panel.
        href = browser.evaluate(
            f"document.querySelector('svg a.asset[data-asset=\"{shared_asset}\"]').getAttribute('href')"
        )
        asset_dom = browser.load(f"{url}/coordinator/{href}")
        # Airflow's own UI: the navigation entry's route shows the page in an iframe (same origin: readable).
        browser.load(f"{url}/plugin/dependencies")
        browser.wait_until(
            "document.querySelector('iframe')?.contentDocument?.querySelectorAll('svg a.node').length > 0"
        )
        framed = browser.evaluate("document.querySelector('iframe').getAttribute('src')")
        browser.screenshot(shot.with_name("inside-airflow.png"))
    assert framed == "/coordinator/"
    assert states(dom)["07_pipeline"] == "succeeded"
    assert len(states(dom)) == len(PIPELINES) + len(OTHER_DAGS)
    assert 'id="detail" data-dag="default/06_pipeline"' in dom
    assert f'data-from="default/07_pipeline" data-to="{shared_asset}"' in dom
    target = re.search(rf'data-asset-target="{PAGE_TARGET}" data-state="refused">.*?</a>', dom)
    assert target is not None and "delivered 1 · pending 1" in target.group(0)
    assert f'id="detail" data-asset="{shared_asset}"' in asset_dom
    assert "#2: refused" in asset_dom and "403 Forbidden" in asset_dom and f"why asset {PAGE_ASSET}" in asset_dom
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep = os.environ.get(SCREENSHOT_ENV)
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
        Path(keep).with_name("dependencies-page-in-airflow.png").write_bytes(
            shot.with_name("inside-airflow.png").read_bytes()
        )
