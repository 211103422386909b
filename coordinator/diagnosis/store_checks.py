"""``doctor``'s checks of the settings and of etcd itself: configuration, etcd, permissions, etcd alarms."""

from __future__ import annotations

from coordinator.diagnosis.model import (
    Check,
    CheckStatus,
    DoctorFacts,
    skipped,
)


def configuration_check(f: DoctorFacts) -> Check:
    details = tuple(f"{s.name} = {s.shown}  ({s.source})" for s in f.settings)
    if f.config_error is not None:
        return Check(
            name="configuration",
            status=CheckStatus.FAIL,
            summary=f.config_error,
            details=details,
            fix="correct the setting named above (flag, COORDINATOR_* variable or the file it names)",
        )
    return Check(name="configuration", status=CheckStatus.OK, summary="settings read", details=details)


def etcd_check(f: DoctorFacts) -> Check:
    if f.etcd_revision is not None:
        return Check(
            name="etcd", status=CheckStatus.OK, summary=f"{f.etcd_endpoints} answered (revision {f.etcd_revision})"
        )
    if f.config_error is not None and not f.etcd_endpoints:
        return skipped("etcd", "the configuration is invalid")
    if "authentication failed" in (f.etcd_error or ""):
        fix = "set COORDINATOR_ETCD_USERNAME and COORDINATOR_ETCD_PASSWORD (or _PASSWORD_FILE) to a user of that etcd"
        return Check(name="etcd", status=CheckStatus.FAIL, summary=f.etcd_error or "", fix=fix)
    if f.etcd_fix is not None:  # a TLS mistake, named by the etcd adapter (coordinator.etcd.tls_hint) with its fix
        return Check(name="etcd", status=CheckStatus.FAIL, summary=f.etcd_error or "", fix=f.etcd_fix)
    return Check(
        name="etcd",
        status=CheckStatus.FAIL,
        summary=f.etcd_error or f"no answer from {f.etcd_endpoints}",
        fix="start etcd there, or point the coordinator at it: --etcd http://HOST:2379 or "
        "COORDINATOR_ETCD_ENDPOINTS=http://HOST:2379 (the same value in Airflow's environment for the plugin)",
    )


def permissions_check(f: DoctorFacts) -> Check:
    user = f.etcd_user or "(no user: etcd auth off)"
    roles_fix = "`coordinator roles` prints the etcdctl commands of each component's role"
    if f.read_ok and f.unreadable:
        return Check(
            name="etcd permissions",
            status=CheckStatus.WARN,
            summary=f"user {user} may read only part of {f.prefix}/ (a plugin's or writer's role?): the checks "
            "that need the rest are not checked",
            details=tuple(f"may not read {family}" for family in f.unreadable),
            fix=f"run doctor as a user with the doctor role (read of {f.prefix}/); {roles_fix}",
        )
    if f.read_ok and f.write_ok is False:
        return Check(
            name="etcd permissions",
            status=CheckStatus.WARN,
            summary=f"user {user} may read {f.prefix}/ but not write it: enough for doctor, status, why and the page; "
            "not for a watcher, prune or backfill",
            fix=f"give the watcher's, prune's and backfill's processes the users of their roles; {roles_fix}",
        )
    if f.read_ok:
        return Check(
            name="etcd permissions", status=CheckStatus.OK, summary=f"user {user} may read and write {f.prefix}/"
        )
    role = "ROLE"
    return Check(
        name="etcd permissions",
        status=CheckStatus.FAIL,
        summary=f"user {user} may not read {f.prefix}/: {f.permission_error or 'refused'}",
        fix=f"etcdctl role grant-permission {role} read --prefix=true {f.prefix}/ (then `etcdctl user "
        f"grant-role {f.etcd_user or 'USER'} {role}`), or set COORDINATOR_ETCD_USERNAME / COORDINATOR_ETCD_PASSWORD"
        f"(_FILE) to a user that has it; {roles_fix}",
    )


def alarms_check(f: DoctorFacts) -> Check:
    """etcd's own alarms: while NOSPACE or CORRUPT is raised etcd refuses every write, so nothing moves. The fix is
    etcd's documented procedure (its maintenance guide, "Space quota"; "Data corruption")."""
    name = "etcd alarms"
    if f.etcd_alarms is None:
        return Check(name=name, status=CheckStatus.WARN, summary=f"etcd's alarm list could not be read: "
                     f"{f.alarms_error or 'not asked'}",
                     fix=f"{f.etcdctl} alarm list (as a user that may)")  # fmt: skip
    if not f.etcd_alarms:
        return Check(name=name, status=CheckStatus.OK, summary="no alarm raised: etcd accepts writes")
    raised = sorted({a.name for a in f.etcd_alarms})
    where = tuple(f"{a.name} on member {a.member}" for a in f.etcd_alarms)
    summary = f"alarm {', '.join(raised)} raised: etcd refuses every write, so nothing is triggered or recorded"
    ctl = f.etcdctl
    if "NOSPACE" in raised:
        rev = f.etcd_revision if f.etcd_revision is not None else "REVISION"
        return Check(
            name=name,
            status=CheckStatus.FAIL,
            summary=f"{summary} (NOSPACE: the database reached etcd's --quota-backend-bytes)",
            details=(
                *where,
                f"compact to the current revision ({rev}), defragment every member, then disarm: {ctl} compact "
                f"{rev}; {ctl} defrag --cluster; {ctl} alarm disarm",
                "then keep it from coming back (after the disarm: these write): `coordinator prune --older-than "
                "DURATION` retires old partitions, etcd's --auto-compaction-retention drops old history; if the "
                "data itself needs the space, raise --quota-backend-bytes on every member (8 GiB at most)",
            ),
            fix=f"{ctl} compact {rev} && {ctl} defrag --cluster && {ctl} alarm disarm",
        )
    return Check(
        name=name,
        status=CheckStatus.FAIL,
        summary=f"{summary} (CORRUPT: a member's data differs from the others')",
        details=(*where, "etcd's procedure: find the member whose hash differs, replace it (member remove, then add "
                 "it back with an empty data dir: it copies a healthy member's data), then disarm"),
        fix=f"{ctl} endpoint hashkv --cluster; after replacing that member: {ctl} alarm disarm",
    )  # fmt: skip
