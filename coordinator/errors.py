"""The coordinator's error tree. Third-party errors are mapped at the boundary with ``raise ... from exc``.

CoordinatorError
├── ConfigError (ValueError)          bad flags, environment, settings files: exit code 2
├── SpecError (ValueError)            dependencies.json is invalid; carries every problem found: exit code 2
├── StoreError                        etcd could not be reached or answered an error
│   ├── StoreUnavailable              connection failed / UNAVAILABLE after retries
│   │   └── StoreTlsError             the TLS handshake failed for a reason a setting fixes (unknown CA, expired
│   │                                 server certificate, host name, client certificate missing or refused,
│   │                                 http/https mismatch): carries problem and fix; commands exit 2
│   │                                 (configuration), doctor prints the fix
│   ├── WritesRefused                 an etcd alarm is raised (NOSPACE: database space exceeded; CORRUPT):
│   │                                 etcd refuses every write until an operator clears it (carries alarm)
│   └── RevisionCompacted             a revision was compacted: a watch's start, a snapshot's pinned page
│                                     (carries compacted_revision; 0 = etcd did not say). The only one.
├── LeadershipLost                    the fencing condition failed: this watcher no longer leads
├── PluginCheckError                  check-plugin: the plugin does not import, register or write: exit code 1
└── AirflowError                      the Airflow REST API refused or failed
    ├── AirflowUnavailable            5xx, timeout, connection error: retried with backoff
    ├── AirflowAuthError              401/403 after the one refresh, or a credential that cannot be obtained
    │   └── AirflowBackingOff         not sent: the instance refused our credentials (or answered 429 with
    │                                 Retry-After) and its calls wait out one backoff (``airflow/gate.py``)
    ├── AirflowNotFound               404: DAG or run missing (recorded on the ledger, retried with its key's backoff)
    └── AirflowConflict               409 that a follow-up GET could not explain
"""

from __future__ import annotations


class CoordinatorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CoordinatorError, ValueError):
    """Invalid configuration (flags, environment, instance files)."""


class SpecError(CoordinatorError, ValueError):
    """dependencies.json is invalid. ``problems`` holds every problem, each already formatted for humans."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(CoordinatorError):
    """etcd failed."""


class StoreUnavailable(StoreError):
    """etcd could not be reached (after the short retries that follow a server restart)."""


class StoreTlsError(StoreUnavailable):
    """The TLS handshake with etcd failed for a reason a setting fixes, classified by the etcd adapter
    (``coordinator.etcd.tls_hint``): ``problem`` names it (``unknown-ca``, ``server-cert-expired``, ``hostname``,
    ``client-cert``, ``not-tls``, ``tls-only``), ``fix`` is the complete line that fixes it (the environment variable,
    the flag, the chart value). A StoreUnavailable, so loops that wait for etcd keep waiting (the certificate may be
    rotated meanwhile)."""

    def __init__(self, message: str, problem: str, fix: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.fix = fix


class WritesRefused(StoreError):
    """etcd refuses writes because one of its alarms is raised: ``alarm`` is ``NOSPACE`` (the database reached
    ``--quota-backend-bytes``) or ``CORRUPT``. Retrying does not help: it lasts until an operator compacts,
    defragments and disarms (``coordinator doctor`` prints the commands)."""

    def __init__(self, message: str, alarm: str) -> None:
        super().__init__(message)
        self.alarm = alarm


class RevisionCompacted(StoreError):
    """The requested revision was compacted away (a watch stream or a unary read said so; the etcd adapter relists or
    restarts its snapshot on it)."""

    def __init__(self, compacted_revision: int) -> None:
        super().__init__(f"revision compacted; oldest available is {compacted_revision}")
        self.compacted_revision = compacted_revision


class LeadershipLost(CoordinatorError):
    """A fenced write failed because this process no longer holds the leader key."""


class PluginCheckError(CoordinatorError):
    """``coordinator check-plugin`` found a step of the plugin's path through Airflow that fails."""


class AirflowError(CoordinatorError):
    """The Airflow REST API failed. ``status`` is the HTTP status of the failing request (0 for transport errors)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AirflowUnavailable(AirflowError):
    """Transient: 5xx, timeout or connection error."""


class AirflowAuthError(AirflowError):
    """401/403 that survived the one refresh of the credential, or a credential that could not be obtained (login
    refused, token file unreadable, token command failed, Google or AWS refusing)."""


class AirflowBackingOff(AirflowAuthError):
    """Not sent: the instance refused our credentials, or asked us to slow down (429 with ``Retry-After``), and every
    call to it waits out one backoff (``coordinator/airflow/gate.py``). ``retry_in_s`` says when the next call may
    go."""

    def __init__(self, message: str, status: int = 0, retry_in_s: float = 0.0) -> None:
        super().__init__(message, status)
        self.retry_in_s = retry_in_s


class AirflowNotFound(AirflowError):
    """404: the DAG (or run) does not exist in that instance."""


class AirflowConflict(AirflowError):
    """409 that a follow-up read could not explain."""
