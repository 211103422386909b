"""``coordinator probe``: ask this host's watcher for ``/healthz`` or ``/readyz``, for a container's HEALTHCHECK.

The watcher image has no curl (nothing but Python and the package), and a HEALTHCHECK that hard-codes a port breaks
when ``COORDINATOR_HTTP`` moves it: the probe reads the same setting the watcher does and asks its listener on the
loopback address (a listener on 0.0.0.0 or :: is reachable there). Exit 0 on 200, 1 on anything else, with the
watcher's own answer (it says why it is not ready) on stderr.
"""

from __future__ import annotations

from http.client import HTTPConnection
from typing import Annotated

import typer

from coordinator.cli.app import EXIT_FAILURE, RUN, app, err, fail, setting_option
from coordinator.runtime.settings import Settings, parse_listen

#: A wildcard listen address is probed on the loopback of the same family.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@app.command(rich_help_panel=RUN)
def probe(
    which: Annotated[
        str, typer.Argument(metavar="healthz|readyz", help="healthz (alive) or readyz (view loaded, etcd answering)")
    ] = "healthz",
    http: Annotated[
        str | None, setting_option("--http", field="http", metavar="HOST:PORT", help="the watcher's listener")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="how long to wait for the answer", min=0.1)
    ] = 3.0,
) -> None:
    """Ask the watcher on this host for /healthz or /readyz (a container HEALTHCHECK).

    Exit 0 when it answers 200, 1 otherwise (no answer, or not healthy or ready), 2 for a bad probe name or a listener
    that is off.
    """
    if which not in ("healthz", "readyz"):
        fail(f"probe: unknown probe {which!r}; expected healthz or readyz")
    address = parse_listen(http if http is not None else Settings().http)
    if address is None:
        fail("probe: the watcher's listener is off (COORDINATOR_HTTP=off): nothing to probe")
    host = _WILDCARDS.get(address.host, address.host)
    conn = HTTPConnection(host, address.port, timeout=timeout)
    try:
        conn.request("GET", f"/{which}")
        answer = conn.getresponse()
        body = answer.read(2000).decode("utf-8", "replace").strip()
    except OSError as exc:
        err.print(f"probe: no answer from http://{host}:{address.port}/{which}: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILURE) from None
    finally:
        conn.close()
    if answer.status != 200:
        err.print(f"probe: /{which} answered {answer.status}: {body}", markup=False)
        raise typer.Exit(EXIT_FAILURE)
