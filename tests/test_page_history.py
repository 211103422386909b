"""The dependencies page shows the audit trail (issue 51, ``page.history``): the newest entries, newest first and
bounded, escaped, standing holds linked to the entry that made them, hidden DAGs scrubbed, and a role that may not read
``history/`` told so while the rest of the page is drawn (pure, and through the etcd-backed service)."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator.core.holds import HistoryAction, HistoryEntry
from coordinator.core.model import KeyLayout, dump_record
from coordinator.core.planner import plan
from coordinator.core.spec.loader import parse_spec
from coordinator.core.view import View
from coordinator.etcd import EtcdStore
from coordinator.page.access import HIDDEN_NAME, Access, restrict
from coordinator.page.history import HISTORY_ROWS, TrailRead, history_panel
from coordinator.page.model import build_page
from coordinator.page.render import render_page
from coordinator.page.service import dependencies_page
from coordinator.runtime.settings import EtcdSettings, Settings, parse_endpoints
from devtools.etcd_server import EtcdServer
from tests.test_page import P, states_store
from tests.test_page_holds import NOW, a_hold

SCRIPT = "<script>alert(1)</script>"


def entry(i: int, at: datetime, **fields: Any) -> HistoryEntry:
    values: dict[str, Any] = {"id": f"e{i:02d}", "action": HistoryAction.RERUN, "by": "alice", "at": at,
                              "why": f"reason {i}", "target": "default/a",
                              "affected": (f"cleared default/a {P}",)}  # fmt: skip
    return HistoryEntry.model_validate({**values, **fields})


def shown_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="history-([^"]+)"', html)


def test_the_panel_lists_newest_first_escapes_and_links_the_standing_hold() -> None:
    """Entries newest first; a reason with HTML is escaped, never markup; the standing hold's line links to the entry
    that made it, which says "standing"; a released hold is not standing."""
    graph = parse_spec('{"a": "r", "b": "a"}', "s.json")
    view = View(KeyLayout("/p"))
    made = entry(1, NOW - timedelta(hours=1), action=HistoryAction.HOLD, hold="h-1", why=SCRIPT)
    gone = entry(2, NOW - timedelta(minutes=30), action=HistoryAction.HOLD, hold="h-2")
    trail = TrailRead((entry(3, NOW - timedelta(minutes=10)), gone, made))
    released = a_hold(id="h-2", released_at=NOW - timedelta(minutes=20), released_by="bob")
    model = build_page(graph, view, plan(graph, view, [P]), P)
    model = replace(model, history=history_panel(trail, [a_hold(), released], NOW))
    html = render_page(model)
    assert shown_ids(html) == ["e03", "e02", "e01"]
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<p id="history-standing">standing holds: <a href="#history-e01">h-1</a></p>' in html
    assert "hold [h-1] (standing)" in html and "hold [h-2] (standing)" not in html


def test_hidden_dags_are_scrubbed_from_the_trail() -> None:
    """A user who may not read DAG a sees the entry, with a's name replaced in its target, reason and effects."""
    graph = parse_spec('{"a": "r", "b": "a"}', "s.json")
    view = View(KeyLayout("/p"))
    model = build_page(graph, view, plan(graph, view, [P]), P)
    trail = TrailRead((entry(1, NOW, why="bad data in default/a"),))
    model = replace(model, history=history_panel(trail, [], NOW))
    seen = restrict(model, Access("default", frozenset({"r", "b"})))
    assert seen.history is not None
    (row,) = seen.history.rows
    assert (row.target, row.why, row.affected) == (HIDDEN_NAME, f"bad data in {HIDDEN_NAME}",
                                                   (f"cleared {HIDDEN_NAME} {P}",))  # fmt: skip


def write_estate(keys: KeyLayout, entries: list[HistoryEntry]) -> list[tuple[str, bytes]]:
    _, writes = states_store(keys)
    hold = a_hold(created_at=datetime.now(UTC) - timedelta(minutes=5))
    return [
        *((key, value) for key, value, _ in writes),
        (keys.hold_key(hold.id), dump_record(hold)),
        *((keys.history_key(e.at, e.id), dump_record(e)) for e in entries),
    ]


def test_the_page_shows_the_newest_entries_bounded_and_escaped(
    arun: Callable[..., Any], etcd_settings: EtcdSettings, etcd_endpoint: str, etcd_prefix: str, tmp_path: Path
) -> None:
    """Against a real etcd with 25 entries: the page shows the 20 newest, newest first, the reason with HTML escaped,
    and the standing hold h-1 linked to its entry."""
    keys = KeyLayout(etcd_prefix)
    start = datetime.now(UTC) - timedelta(hours=2)
    entries = [entry(i, start + timedelta(minutes=i)) for i in range(25)]
    entries[24] = entry(24, start + timedelta(minutes=24), action=HistoryAction.HOLD, hold="h-1", why=SCRIPT)

    async def write() -> None:
        async with await EtcdStore.connect(etcd_settings) as store:
            for key, value in write_estate(keys, entries):
                await store.put(key, value)

    arun(write())
    settings = Settings(etcd_endpoints=etcd_endpoint, prefix=etcd_prefix, deps=tmp_path / "absent.json")
    answer = asyncio.run(asyncio.wait_for(dependencies_page(P, None, instance="default", settings=settings), 30))
    assert answer.status == 200
    assert shown_ids(answer.html) == [f"e{i:02d}" for i in range(24, 24 - HISTORY_ROWS, -1)]
    assert SCRIPT not in answer.html and "&lt;script&gt;" in answer.html
    assert '<a href="#history-e24">h-1</a>' in answer.html


def test_a_role_that_may_not_read_the_history_is_told_so(private_etcd: EtcdServer, arun: Callable[..., Any],
                                                          tmp_path: Path) -> None:  # fmt: skip
    """Under an etcd role granted everything of the prefix but ``history/``: the page is drawn (200, the holds named)
    and its audit trail says the role may not read it, with no entry shown."""
    prefix = "/coordinator"
    keys = KeyLayout(prefix)
    etcdctl = [str(private_etcd.binary.with_name("etcdctl")), f"--endpoints={private_etcd.endpoint}"]

    def ctl(*args: str) -> None:
        subprocess.run([*etcdctl, *args], check=True, capture_output=True, timeout=30)

    open_settings = EtcdSettings(endpoints=parse_endpoints(private_etcd.endpoint))

    async def write() -> None:
        async with await EtcdStore.connect(open_settings) as store:
            for key, value in write_estate(keys, [entry(1, datetime.now(UTC), why="secret-free reason")]):
                await store.put(key, value)

    arun(write())
    ctl("role", "add", "root")
    ctl("user", "add", "root", "--new-user-password=root-pw")
    ctl("user", "grant-role", "root", "root")
    ctl("role", "add", "nohistory")
    # [prefix/, prefix/history/) and [prefix/history0, prefix0): the whole prefix but the audit trail.
    ctl("role", "grant-permission", "nohistory", "read", f"{prefix}/", keys.history)
    ctl("role", "grant-permission", "nohistory", "read", keys.history[:-1] + "0", prefix + "0")
    ctl("user", "add", "page", "--new-user-password=page-pw")
    ctl("user", "grant-role", "page", "nohistory")
    ctl("auth", "enable")
    page = EtcdSettings.model_validate(
        {"endpoints": parse_endpoints(private_etcd.endpoint), "username": "page", "password": "page-pw"}
    )
    settings = Settings(etcd_endpoints=private_etcd.endpoint, prefix=prefix, deps=tmp_path / "absent.json")
    answer = asyncio.run(
        asyncio.wait_for(dependencies_page(P, "default/g", instance="default", settings=settings, etcd=page), 30)
    )
    assert answer.status == 200, answer.html
    assert "held by h-1" in answer.html
    assert '<p id="history-unread">' in answer.html and not shown_ids(answer.html)
