"""The dependencies page inside Airflow 3's api-server: a FastAPI app mounted at ``/coordinator`` and a navigation
entry "Dependencies" (an external view shown in Airflow's UI), registered by :mod:`coordinator.airflow_plugin.plugin`.

Rules:
- **Thin glue**: authentication here, everything else in :mod:`coordinator.page` (which imports neither
  Airflow nor a web framework, so the watcher can serve the same page).
- **Airflow users only.** Only users logged into Airflow: the api-server's own :func:`get_user` (the JWT in the
  ``Authorization`` header or the ``_token`` cookie Airflow's UI sets at login). Authorization is per DAG: the auth
  manager's ``get_authorized_dag_ids(user, "GET")`` (the simple, FAB and multi-team managers all answer it) names the
  DAGs of this instance the user may read, and only those are drawn (``coordinator.page.access``). Airflow's
  ``requires_access_dag`` is NOT used: it takes ``dag_id`` from the query string, so ``?dag_id=<a DAG I may read>``
  would narrow the check to that one DAG. Anonymous: 401 with a link to Airflow's login page; a user who may read no
  DAG: 403. Airflow's modules are imported on the first request, in the api-server, never when the plugin is loaded by a
  scheduler or worker.
- **Read-only**: GET only. Configuration is the plugin's (:mod:`coordinator.airflow_plugin.config`:
  ``COORDINATOR_*``, ``[coordinator]``, the etcd connection): instance, prefix, ``deps``, etcd endpoints, credentials
  and TLS. The connection is looked up once per api-server process; a request waits for it at most
  :data:`~coordinator.airflow_plugin.config.LOOKUP_WAIT_S` (then 503, "try again").
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from coordinator.airflow_plugin.config import local_config
from coordinator.airflow_plugin.page_credential import PageResolver, read_options
from coordinator.errors import ConfigError, StoreUnavailable
from coordinator.page.access import Access
from coordinator.page.render import render_message
from coordinator.page.service import TITLE, dependencies_page

URL_PREFIX = "/coordinator"
# Headers of every answer: the page holds run ids and errors of the user's session; nothing may cache it.
NO_STORE = {"Cache-Control": "no-store"}


async def authorize(request: Request) -> frozenset[str]:
    """**Airflow users only**: the DAG ids of this Airflow the user may read (never taken from the request), or
    HTTPException 401 (not logged in) / 403 (may read no DAG)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
    from starlette.concurrency import run_in_threadpool

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    manager = get_auth_manager()
    # A database read (the DAG table, per team): off the event loop.
    readable = await run_in_threadpool(lambda: manager.get_authorized_dag_ids(user=user, method="GET"))
    if not readable:
        raise HTTPException(403, "may read no DAG")
    return frozenset(readable)


def _login_url(ui_base: str) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return str(get_auth_manager().get_url_login())
    except Exception:  # an auth manager without a login page: Airflow's root still leads there
        return ui_base + "/"


_resolver: PageResolver | None = None


def _settings() -> PageResolver:
    """The plugin's settings in this api-server process (**Read-only**) with the page's own etcd credential on top
    (:mod:`coordinator.airflow_plugin.page_credential`), created on the first request; ConfigError when invalid
    (not kept: the next request reads them again)."""
    global _resolver
    if _resolver is None:
        _resolver = PageResolver(local_config(), read_options())
    return _resolver


def create_app() -> FastAPI:
    app = FastAPI(title="coordinator dependencies page", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, partition: str | None = None, node: str | None = None) -> HTMLResponse:
        ui_base = str(request.scope.get("root_path", "")).removesuffix(URL_PREFIX)
        try:
            readable = await authorize(request)
        except HTTPException as exc:
            if exc.status_code == 401:
                login = escape(_login_url(ui_base))
                body = render_message(TITLE, "Log in to Airflow to see the dependencies.").replace(
                    "</p>", f' <a href="{login}" target="_top">Log in</a></p>', 1
                )
                return HTMLResponse(body, status_code=401, headers=NO_STORE)
            return HTMLResponse(
                render_message(TITLE, "Your Airflow role may not read DAGs."), status_code=403, headers=NO_STORE
            )
        try:
            resolver = _settings()
            etcd = await resolver.etcd()
        except ConfigError as exc:
            message = f"The coordinator is not configured here: {exc}"
            return HTMLResponse(render_message(TITLE, message), status_code=503, headers=NO_STORE)
        except StoreUnavailable:
            message = "The etcd connection is not available yet; try again in a moment."
            return HTMLResponse(render_message(TITLE, message), status_code=503, headers=NO_STORE)
        config = resolver.config
        answer = await dependencies_page(
            partition,
            node,
            instance=config.writer.instance,
            ui_base=ui_base,
            settings=config.settings,
            etcd=etcd,
            query=dict(request.query_params),  # filters and paging of a large graph (page.select)
            access=Access(config.writer.instance, readable, config.settings.page_other_instances == "shown"),
        )
        return HTMLResponse(answer.html, status_code=answer.status, headers=NO_STORE)

    return app


FASTAPI_APPS = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "coordinator dependencies page"}]
EXTERNAL_VIEWS = [
    {
        "name": "Dependencies",
        # Shown inside Airflow's UI (an iframe at /plugin/dependencies) in the "Browse" menu.
        "href": URL_PREFIX + "/",
        "url_route": "dependencies",
        "destination": "nav",
        "category": "browse",
    }
]
