"""Asking one Airflow instance whether the coordinator can work with it: URL, API version, login, permissions, DAGs.

Used by the watcher at start (one log line per instance, a metric, its presence record) and by ``coordinator doctor``.

Rules:
- **Read-only.** Nothing is triggered, cleared or unpaused. Permissions are asked with requests Airflow must refuse
  after its permission check (``AirflowClient.may_trigger`` / ``may_clear``).
- **Never raises for what Airflow answers.** Every failure becomes the check's ``error`` with ``fix``, the setting or
  command that resolves it (a refused login names that instance's credential settings).
- **Bounded.** At most MAX_PROBED DAGs are asked about permissions (two requests each); every DAG of the graph is looked
  up in one listing.
- **Its own client.** Its own client, marked ``purpose="check"`` (User-Agent ``airflow-etcd-coordinator/check``).
- **Keys accepted.** Given the instance's keyed dependents (``doctor`` gives them; the watcher's start check does
  not), the timetables the one DAG listing shows judge them, a suspect's asked once more by its timetable's type
  (``coordinator.airflow.key_check``): each one whose DAG refuses a ``partition_key`` is named (``keys_refused``; one
  on a custom timetable apart, ``keys_unsure``) with what to set where (``keys_said``).
- **One audit row per start.** Airflow 3 writes an audit-log row for the permitted trigger probe (event
  ``trigger_dag_run``, extra ``{"coordinator_probe": true}``; no run is created; measured on 3.3.2) and none for the
  dry-run clear. So the watcher's start check asks about one DAG per instance (one row per start); ``doctor`` asks about
  up to MAX_PROBED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from coordinator.airflow.client import AirflowClient, ApiVersion
from coordinator.airflow.key_check import refused_keys
from coordinator.core.instance_coverage import missing_airflow_fix
from coordinator.core.key_acceptance import KeyedDag
from coordinator.errors import AirflowAuthError, AirflowError, AirflowUnavailable
from coordinator.informer.presence_value import InstanceCheck
from coordinator.manager import wall_clock
from coordinator.runtime.settings import InstanceSettings

#: DAGs whose trigger and clear permissions are probed: Airflow roles grant per DAG at most, and 20 DAGs (40 requests,
#: well under a second on a healthy API) find a role that misses some without hammering a large estate.
MAX_PROBED = 20
#: The run id the clear-permission probe names: no real run has it, so a permitted dry run answers 404.
PROBE_RUN_ID = "coordinator_permission_probe__no_such_run"
#: One instance's whole check: a hung API must not hold a watcher's start or doctor for long.
CHECK_TIMEOUT_S = 30.0


async def check_instance(
    name: str,
    settings: InstanceSettings | None,
    dag_ids: Sequence[str],
    *,
    timeout_s: float = 10.0,
    probe_limit: int = MAX_PROBED,
    configured: Collection[str] = (),
    instances_file: Path | None = None,
    keyed: Sequence[KeyedDag] = (),
    deps: str = "dependencies.json",
) -> InstanceCheck:
    """Probe instance ``name`` for the DAGs ``dag_ids`` of the graph (**Read-only**,
    **Never raises for what Airflow answers** and **Bounded**), each request within ``timeout_s``, the permissions on at
    most ``probe_limit`` DAGs (the watcher's start check asks about one: **One audit row per start**).

    With a client of its own (User-Agent ``.../check``, **Its own client**): its own login, and Airflow's access log
    (and the test suite's fake) tell the probes' 4xx answers apart from the coordinator's real requests.

    ``configured`` (the instances that have an Airflow) and ``instances_file`` (COORDINATOR_INSTANCES_FILE) shape the
    fix for an instance without one (``core.instance_coverage``'s **Every way to configure**). ``keyed``: this
    instance's keyed dependents, whose DAGs must accept a ``partition_key`` (**Keys accepted**; ``deps`` is the file
    named in their fixes)."""
    now = wall_clock()
    if settings is None:
        return InstanceCheck(
            instance=name,
            checked_at=now,
            error=f"no Airflow configured for this instance (configured: {', '.join(sorted(configured)) or 'none'})",
            fix=missing_airflow_fix((name,), configured, None if instances_file is None else str(instances_file)),
        )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), AirflowClient(settings, timeout_s=timeout_s, name=name,
                                                                   purpose="check") as client:  # fmt: skip
            return await _probe(name, settings, client, dag_ids, now, probe_limit, keyed, deps)
    except TimeoutError:
        return InstanceCheck(
            instance=name,
            url=settings.url,
            checked_at=now,
            error=f"no complete answer within {CHECK_TIMEOUT_S:g} s",
            fix="is the API server overloaded? its logs say; then run `coordinator doctor` again",
        )


async def _probe(
    name: str,
    settings: InstanceSettings,
    client: AirflowClient,
    dag_ids: Sequence[str],
    now: datetime,
    limit: int,
    keyed: Sequence[KeyedDag],
    deps: str,
) -> InstanceCheck:
    result = InstanceCheck(instance=name, url=settings.url, checked_at=now)
    try:
        version = await client.version()
        api = str(await client.api_version())
        result = result.model_copy(update={"version": version, "api": api})
    except AirflowError as exc:
        return result.model_copy(update={"error": str(exc), "fix": _reach_fix(name, exc)})
    try:
        # The first authenticated request: it logs in (Airflow 3) or sends basic auth.
        dags = await client.dag_list()
    except AirflowAuthError as exc:
        if exc.status == 401 or "/auth/token" in str(exc):  # the login itself was refused
            return result.model_copy(update={"login": False, "error": str(exc), "fix": _login_fix(settings, exc)})
        return result.model_copy(
            update={"login": True, "read": False, "error": str(exc), "fix": _role_fix(settings, "read")}
        )
    except AirflowError as exc:
        return result.model_copy(update={"error": str(exc), "fix": _reach_fix(name, exc)})
    result = result.model_copy(update={"login": True})
    listed = {d.dag_id: d.is_paused for d in dags}
    missing = tuple(d for d in dag_ids if d not in listed)
    paused = tuple(d for d in dag_ids if listed.get(d))
    present = [d for d in dag_ids if d in listed][:limit]
    trigger: bool | None = True if present else None
    clear: bool | None = True if present else None
    try:
        refused = await refused_keys(client, keyed, dags, version=version, deps=deps) if keyed else ()
        for dag in present:
            may_trigger, may_clear = await _may_trigger(client, dag), await _may_clear(client, dag)
            trigger = _and(trigger, may_trigger)
            clear = _and(clear, may_clear)
    except AirflowError as exc:
        return result.model_copy(update={"read": True, "error": str(exc), "fix": _reach_fix(name, exc)})
    update: dict[str, object] = {
        "read": True,
        "trigger": trigger,
        "clear": clear,
        "dags_checked": len(dag_ids),
        "missing": missing,
        "paused": paused,
        "keyed_checked": len(keyed),
        "keys_refused": tuple(r.dag_id for r in refused if r.certain),
        "keys_unsure": tuple(r.dag_id for r in refused if not r.certain),
        "keys_said": tuple(r.line() for r in refused),
    }
    if trigger is False or clear is False:
        denied = "/".join(w for w, ok in (("trigger", trigger), ("clear", clear)) if ok is False)
        update["fix"] = _role_fix(settings, denied)
    return result.model_copy(update=update)


async def _may_trigger(client: AirflowClient, dag_id: str) -> bool | None:
    """Whether the user may create runs of ``dag_id``, asked without creating one: Airflow 3 authorizes before it
    validates the body, so a body it must refuse (no logical_date, an unknown key) answers 403 when not allowed and
    422 when allowed. None on Airflow 2, whose API validates the body first (no read-only question exists there)."""
    if await client.api_version() is ApiVersion.V1:
        return None
    return await _permitted(client, f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", {"coordinator_probe": True}, 422)


async def _may_clear(client: AirflowClient, dag_id: str) -> bool | None:
    """Whether the user may clear runs of ``dag_id``, asked without clearing: a dry run of a run that does not exist
    answers 404 when allowed, 403 when not."""
    path = f"/api/{await client.api_version()}/dags/{quote(dag_id, safe='')}/dagRuns/{PROBE_RUN_ID}/clear"
    return await _permitted(client, path, {"dry_run": True}, 404)


async def _permitted(client: AirflowClient, path: str, body: object, allowed_status: int) -> bool | None:
    try:
        await client.send("POST", path, body)
    except AirflowAuthError as exc:
        if exc.status == 403:
            return False
        raise
    except AirflowError as exc:
        if exc.status in (allowed_status, 400, 422):
            return True
        raise
    return None  # accepted: impossible for these bodies on the known Airflow versions; nothing says what it did


def _and(so_far: bool | None, answer: bool | None) -> bool | None:
    """False wins (one DAG refused is a failure); unknown (None) stays unknown unless something was refused."""
    if so_far is False or answer is False:
        return False
    if so_far is None or answer is None:
        return None
    return True


def _reach_fix(name: str, exc: AirflowError) -> str:
    setting = "COORDINATOR_AIRFLOW_URL" if name == "default" else "the url of this instance in the instances file"
    if isinstance(exc, AirflowUnavailable):
        return f"is the Airflow API server running at that address? Otherwise correct {setting}"
    return f"check {setting}: it must be the Airflow base URL (the one the UI uses, without /api)"


def _login_fix(settings: InstanceSettings, exc: AirflowError) -> str:
    where = settings.credentials_from or "the instance's username and password settings"
    if settings.username is None:
        return f"set a username and password for the watcher's Airflow user: {where}"
    return f"correct the password (or user {settings.username!r}): {where}"


def _role_fix(settings: InstanceSettings, what: str) -> str:
    return (
        f"give user {settings.username or '(anonymous)'} a role that may {what} the graph's DAGs (Airflow 3 FAB / "
        "Airflow 2: the 'User' role or a custom one with DAG Runs create/edit and DAGs read/edit; Airflow 3 simple "
        "auth manager: role 'user' or higher)"
    )
