"""Why a TLS handshake with etcd failed, named with the setting that fixes it: where TLS failures are classified.

What gRPC (grpcio 1.85, BoringSSL) says in a status's details, and what it means (the problem's name first):

- ``unknown-ca``: ``CERTIFICATE_VERIFY_FAILED`` or ``certificate signature failure``: this client did not verify
  etcd's certificate (no CA configured, or not the CA that signed it).
- ``server-cert-expired``: ``CERTIFICATE_VERIFY_FAILED: certificate has expired`` (or ``is not yet valid``).
- ``hostname``: ``Hostname Verification Check failed``: the certificate does not name the endpoint's host.
- ``client-cert``: an alert from etcd (``SSLV3_ALERT_BAD_CERTIFICATE``, ``..._CERTIFICATE_REQUIRED``,
  ``..._UNKNOWN_CA``): etcd (``--client-cert-auth``) refused our client certificate, or we sent none.
- ``not-tls``: ``Handshake read failed`` on an https:// endpoint whose member answers plain HTTP (``GET /version``).
- ``tls-only``: ``Socket closed`` on an http:// endpoint whose member completes a TLS handshake.

Rules:
- **One classification.** :func:`classify` (words only, no I/O) is asked by ``wire.map_error`` for every gRPC error;
  :func:`diagnose` (the words, then one bounded probe where the words prove nothing) by ``EtcdStore.connect`` when no
  endpoint answered. Both return a :class:`~coordinator.errors.StoreTlsError` whose ``fix`` is a complete line: the
  environment variable, the flag and the Helm chart value.
- **Probes prove or say nothing.** A probe runs only after a failure, never on the healthy path; each is bounded by
  :data:`PROBE_TIMEOUT_S`; a probe that cannot ask proves nothing (False), and the original error stands.
- **No secrets.** Messages name files and hosts, never the contents of a key or certificate.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from enum import StrEnum

from coordinator.errors import StoreTlsError
from coordinator.runtime.settings import Endpoint, EtcdSettings

#: How long one probe (plain HTTP or a TLS handshake) may take: a local member answers in milliseconds.
PROBE_TIMEOUT_S = 2.0

#: The chart's values for etcd's TLS material (charts/airflow-etcd-coordinator/values.yaml, ``etcd.tls``).
CHART_CA = "chart: etcd.tls.enabled=true and etcd.tls.existingSecret=SECRET holding the CA under etcd.tls.caKey"
CHART_PAIR = "chart: etcd.tls.certKey and etcd.tls.keyKey, entries of the Secret etcd.tls.existingSecret"


class TlsProblem(StrEnum):
    """What is wrong, as ``StoreTlsError.problem`` and ``etcd.tls_failed problem=`` name it (the module docstring's
    list)."""

    UNKNOWN_CA = "unknown-ca"
    SERVER_CERT_EXPIRED = "server-cert-expired"
    HOSTNAME = "hostname"
    CLIENT_CERT = "client-cert"
    NOT_TLS = "not-tls"
    TLS_ONLY = "tls-only"


_VERIFY_REASON = re.compile(r"(?:CERTIFICATE_VERIFY_FAILED|BAD_SIGNATURE): ([^:]+)")
# Alerts etcd sends about OUR certificate: BoringSSL names them <VERSION>_ALERT_<NAME>.
_CLIENT_CERT_ALERTS = ("ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_REQUIRED", "ALERT_UNKNOWN_CA",
                       "ALERT_CERTIFICATE_UNKNOWN", "ALERT_CERTIFICATE_EXPIRED", "ALERT_CERTIFICATE_REVOKED",
                       "ALERT_UNSUPPORTED_CERTIFICATE")  # fmt: skip


def is_handshake_failure(text: str) -> bool:
    """gRPC's words for a TLS handshake that did not happen (``Handshake read failed``, ``SSL_ERROR_...``)."""
    lowered = text.lower()
    return "handshake" in lowered or "ssl" in lowered


def url(ep: Endpoint, tls: bool | None = None) -> str:
    """``ep`` as a URL; ``tls`` overrides its scheme."""
    return f"{'https' if (ep.tls if tls is None else tls) else 'http'}://{ep.host}:{ep.port}"


def classify(text: str, settings: EtcdSettings, index: int) -> StoreTlsError | None:
    """**One classification**, from gRPC's words alone: the error for ``text`` (a status's details) on endpoint
    ``index`` of ``settings``, None when the words name no TLS problem (or prove nothing without a probe)."""
    ep = settings.endpoints[index]
    if not ep.tls:
        return None
    upper = text.upper()
    if "HOSTNAME VERIFICATION" in upper or "NOT IN PEER CERTIFICATE" in upper:
        return _hostname(ep)
    if any(alert in upper for alert in _CLIENT_CERT_ALERTS):
        return _client_cert(ep, settings)
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE SIGNATURE FAILURE" in upper or "BAD_SIGNATURE" in upper:
        found = _VERIFY_REASON.search(text)
        reason = found.group(1).strip() if found else "certificate verify failed"
        if "expired" in reason or "not yet valid" in reason:
            return _expired(ep, reason)
        return _unknown_ca(ep, settings, reason)
    return None


async def diagnose(text: str, settings: EtcdSettings, index: int) -> StoreTlsError | None:
    """:func:`classify`, then, when gRPC's words prove nothing, one probe per endpoint (**Probes prove or say
    nothing**): a failed handshake with an https:// endpoint that answers plain HTTP is ``not-tls``; a closed
    socket of an http:// endpoint that completes a TLS handshake is ``tls-only``."""
    found = classify(text, settings, index)
    if found is not None:
        return found
    endpoints = settings.endpoints
    if is_handshake_failure(text):
        plain = [ep for ep in endpoints if ep.tls and await plain_http_answers(ep)]
        if plain:
            return _not_tls(plain, endpoints)
    elif "socket closed" in text.lower():
        speaking = [ep for ep in endpoints if not ep.tls and await tls_answers(ep)]
        if speaking:
            return _tls_only(speaking, endpoints)
    return None


async def plain_http_answers(ep: Endpoint, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``ep`` answers plain HTTP/1.1 (etcd serves ``GET /version`` on its client port beside gRPC): asked
    after a failed TLS handshake, a plain answer proves the member does not speak TLS, which gRPC's "handshake read
    failed" does not say. Any failure to ask is False (nothing proven)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(ep.host, ep.port)
            writer.write(f"GET /version HTTP/1.1\r\nHost: {ep.host}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            head = await reader.read(16)
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
    return head.startswith(b"HTTP/1.")


async def tls_answers(ep: Endpoint, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``ep`` completes a TLS handshake (or answers it with a TLS alert): asked after an http:// endpoint
    closed the socket, it proves the member speaks only TLS. Nothing is verified and no certificate is sent: the
    question is the protocol, not trust. Any other failure is False (nothing proven)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(ep.host, ep.port, ssl=context, server_hostname=ep.host)
    except ssl.SSLError as exc:
        return "ALERT" in str(exc).upper()  # the peer spoke TLS to refuse us
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
    return True


# -- the errors, each with its fix line --------------------------------------------------------------------------


def _ca_given(settings: EtcdSettings) -> str | None:
    if settings.ca_file is not None:
        return f"COORDINATOR_ETCD_CA_FILE={settings.ca_file}"
    if settings.ca_pem is not None:
        return "the CA given as PEM (the plugin's Airflow connection, extra.ca)"
    return None


def _unknown_ca(ep: Endpoint, settings: EtcdSettings, reason: str) -> StoreTlsError:
    given = _ca_given(settings)
    if given is None:
        what = (f"etcd at {url(ep)} presented a certificate this client cannot verify ({reason}): no CA is configured, "
                "so only the system's CAs were tried")  # fmt: skip
        fix = ("set COORDINATOR_ETCD_CA_FILE to the CA that signed etcd's server certificate (the file etcd's "
               "--cert-file chains to, often ca.crt; in Airflow's environment too, for the plugin); "
               f"{CHART_CA}")  # fmt: skip
    else:
        what = (f"etcd at {url(ep)} presented a certificate that {given} did not sign ({reason}): a wrong or outdated "
                "CA")  # fmt: skip
        fix = ("point COORDINATOR_ETCD_CA_FILE at the CA that signed etcd's server certificate (the file etcd's "
               "--cert-file chains to; after a CA rotation, a bundle of the old and the new CA); "
               f"{CHART_CA}")  # fmt: skip
    return StoreTlsError(what, TlsProblem.UNKNOWN_CA, fix)


def _expired(ep: Endpoint, reason: str) -> StoreTlsError:
    what = f"etcd at {url(ep)} presented a certificate outside its validity dates ({reason})"
    fix = ("renew etcd's server certificate (etcd's --cert-file and --key-file; cert-manager renews before expiry) and "
           "check this host's clock; the coordinator's CA setting is not the cause")  # fmt: skip
    return StoreTlsError(what, TlsProblem.SERVER_CERT_EXPIRED, fix)


def _hostname(ep: Endpoint) -> StoreTlsError:
    what = (f"etcd's certificate does not name {ep.host}, the host of the endpoint {url(ep)} (TLS checks the host "
            "against the certificate's subject alternative names)")  # fmt: skip
    fix = (f"use a host the certificate names in COORDINATOR_ETCD_ENDPOINTS / --etcd (chart: etcd.endpoints), or "
           f"reissue etcd's certificate with {ep.host} among its subject alternative names")  # fmt: skip
    return StoreTlsError(what, TlsProblem.HOSTNAME, fix)


def _client_cert(ep: Endpoint, settings: EtcdSettings) -> StoreTlsError:
    pair = ("COORDINATOR_ETCD_CERT_FILE and COORDINATOR_ETCD_KEY_FILE to a client certificate and its key, signed by "
            "the CA of etcd's --trusted-ca-file and valid for client authentication")  # fmt: skip
    if settings.cert_file is None and settings.cert_pem is None:
        what = (f"etcd at {url(ep)} requires a client certificate (it runs with --client-cert-auth) and none is "
                "configured")  # fmt: skip
        fix = f"set {pair} (in Airflow's environment too, for the plugin); {CHART_PAIR}"
    else:
        given = (f"COORDINATOR_ETCD_CERT_FILE={settings.cert_file}" if settings.cert_file is not None
                 else "the certificate given as PEM (the plugin's Airflow connection, extra.cert)")  # fmt: skip
        what = (f"etcd at {url(ep)} refused the client certificate {given}: not signed by the CA etcd trusts "
                "(--trusted-ca-file), expired, or not valid for client authentication")  # fmt: skip
        fix = f"set {pair}; {CHART_PAIR}"
    return StoreTlsError(what, TlsProblem.CLIENT_CERT, fix)


def _not_tls(plain: Sequence[Endpoint], endpoints: Sequence[Endpoint]) -> StoreTlsError:
    where = ", ".join(f"{ep.host}:{ep.port}" for ep in plain)
    fixed = ",".join(url(ep, tls=False) for ep in endpoints)
    what = (f"etcd at {where} does not speak TLS (it answered plain HTTP to {url(plain[0])}): use "
            f"{url(plain[0], tls=False)}, or enable TLS on etcd (--cert-file and --key-file, then "
            "--advertise-client-urls https://...)")  # fmt: skip
    fix = (f"COORDINATOR_ETCD_ENDPOINTS={fixed} (or --etcd {fixed}; chart: etcd.endpoints={fixed} and "
           "etcd.tls.enabled=false), or enable TLS on etcd and keep https://")  # fmt: skip
    return StoreTlsError(what, TlsProblem.NOT_TLS, fix)


def _tls_only(speaking: Sequence[Endpoint], endpoints: Sequence[Endpoint]) -> StoreTlsError:
    where = ", ".join(f"{ep.host}:{ep.port}" for ep in speaking)
    fixed = ",".join(url(ep, tls=True) for ep in endpoints)
    what = (f"etcd at {where} speaks only TLS (it completed a TLS handshake; {url(speaking[0])} is plain http): use "
            f"{url(speaking[0], tls=True)}")  # fmt: skip
    fix = (f"COORDINATOR_ETCD_ENDPOINTS={fixed} (or --etcd {fixed}) with COORDINATOR_ETCD_CA_FILE set to etcd's CA "
           f"(chart: etcd.endpoints={fixed} and etcd.tls.enabled=true with etcd.tls.existingSecret)")  # fmt: skip
    return StoreTlsError(what, TlsProblem.TLS_ONLY, fix)
