"""PostgresServer: a real PostgreSQL on a free loopback port, fresh databases both Airflow drivers reach, and a stop
that leaves no process and no files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy

from devtools.postgres_server import PostgresServer, PostgresServerError
from devtools.procs import is_alive


def _children(pid: int) -> list[int]:
    """The postmaster's live children (its backends and background workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


#: The current database as asyncpg sees it: the driver of Airflow's API server (Airflow derives postgresql+asyncpg
#: from the URL), run in a child process of its own, as that server is.
ASYNC_SELECT = """
import asyncio, sys
import asyncpg
from sqlalchemy import make_url

url = make_url(sys.argv[1])

async def main():
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database, timeout=10
    )
    try:
        print(await connection.fetchval("SELECT current_database()"))
    finally:
        await connection.close()

asyncio.run(main())
"""


def _current_database_async(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", ASYNC_SELECT, url], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_starts_creates_a_database_and_stops_leaving_no_process() -> None:
    """A started server makes a fresh database both psycopg2 and asyncpg reach; stop() ends every server process and
    removes the temp dir, even with a client still connected."""
    server = PostgresServer(stop_timeout_s=5.0)
    try:
        server.start()
        pid = server.pid
        assert pid is not None and is_alive(pid)
        url = server.create_database("airflow_one")
        assert url == f"postgresql+psycopg2://postgres@127.0.0.1:{server.port}/airflow_one"
        assert "airflow_one" in server.databases()
        engine = sqlalchemy.create_engine(url)
        client = engine.connect()  # left open on purpose: stop() must not wait for it
        assert client.execute(sqlalchemy.text("SELECT current_database()")).scalar() == "airflow_one"
        assert _current_database_async(url) == "airflow_one"
        children = _children(pid)
        assert children, "a running server has backends and background workers"
        began = time.monotonic()
    finally:
        server.stop()
    assert time.monotonic() - began < 5.0, "stop() waited for the connected client instead of ending it"
    assert not is_alive(pid)
    assert [child for child in children if is_alive(child)] == []
    assert not server.base.exists()
    # Released here, not by the garbage collector: SQLAlchemy's finalizer for a connection whose server went away,
    # run in the middle of pytest compiling a later module, trips CPython 3.11.7's AST recursion check.
    client.invalidate()
    client.close()
    engine.dispose()


def test_every_database_is_fresh_and_separate() -> None:
    """Two databases on one server are distinct: a table made in one is absent from the other."""
    with PostgresServer() as server:
        first = sqlalchemy.create_engine(server.create_database("stack_a"))
        second = sqlalchemy.create_engine(server.create_database("stack_b"))
        try:
            with first.begin() as connection:
                connection.execute(sqlalchemy.text("CREATE TABLE dag (id text)"))
            assert sqlalchemy.inspect(first).has_table("dag")
            assert not sqlalchemy.inspect(second).has_table("dag")
        finally:
            first.dispose()
            second.dispose()


@pytest.mark.parametrize(
    "name",
    [pytest.param("Airflow", id="upper-case"), pytest.param("a-b", id="dash"), pytest.param("1st", id="digit-first")],
)
def test_a_bad_database_name_is_refused_before_any_sql(name: str) -> None:
    """create_database() refuses a name PostgreSQL would need quoting for, naming it, without a server call."""
    server = PostgresServer()
    try:
        with pytest.raises(ValueError, match=repr(name)):
            server.create_database(name)
    finally:
        server.stop()


def test_a_bin_dir_without_the_server_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A POSTGRES_BIN_DIR without a server binary fails saying which directory is wrong."""
    monkeypatch.setenv("POSTGRES_BIN_DIR", str(tmp_path))
    with pytest.raises(PostgresServerError, match=f"POSTGRES_BIN_DIR={tmp_path} holds no 'postgres' executable"):
        PostgresServer()
