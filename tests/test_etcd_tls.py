"""TLS mistakes against a real etcd that requires client certificates (``devtools.etcd_server.ServerTls``), each named
with its own fix line: no CA, a wrong CA, no client certificate, a client certificate of another CA, plain http against
the https endpoint, and https against a plain etcd (a host the certificate does not name is checked on gRPC's words
only: "localhost" may resolve to ::1 first, where nothing listens, and gRPC reports the last address). At the adapter
(``EtcdStore.connect``), in ``doctor`` (text and JSON), and in ``coordinator watch`` as a real process (exit code,
message, and no line of gRPC's C core on its stderr)."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.errors import StoreTlsError
from coordinator.etcd import EtcdStore
from coordinator.etcd.tls_hint import classify
from coordinator.runtime.settings import EtcdSettings, parse_endpoints
from devtools.etcd_server import EtcdServer, ServerTls
from tests.conftest import run_coro
from tests.support.certs import make_certs
from tests.support.cli_inproc import run_cli as run_inproc
from tests.test_doctor import checks_of, cli_env

ROOT = Path(__file__).resolve().parents[1]
#: A line of gRPC's C core as absl writes it: "I1126 21:46:21.285947   14554 ssl_transport_security.cc:2563] ...".
C_CORE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\]", re.MULTILINE)
CHART_CA = "chart: etcd.tls.enabled=true and etcd.tls.existingSecret=SECRET holding the CA under etcd.tls.caKey"
CHART_PAIR = "chart: etcd.tls.certKey and etcd.tls.keyKey, entries of the Secret etcd.tls.existingSecret"
PAIR = ("COORDINATOR_ETCD_CERT_FILE and COORDINATOR_ETCD_KEY_FILE to a client certificate and its key, signed by the "
        "CA of etcd's --trusted-ca-file and valid for client authentication")  # fmt: skip


@dataclass(frozen=True)
class World:
    tls: ServerTls
    other: ServerTls  # signed by another CA
    tls_port: int
    plain_port: int


@dataclass(frozen=True)
class Case:
    """A TLS mistake: the etcd settings that make it, the problem the adapter names, words of its message, its fix."""

    env: Callable[[World], dict[str, str]]
    problem: str
    says: Callable[[World], str]
    fix: Callable[[World], str]


def _files(ca: Path | None = None, cert: Path | None = None, key: Path | None = None) -> dict[str, str]:
    given = {"COORDINATOR_ETCD_CA_FILE": ca, "COORDINATOR_ETCD_CERT_FILE": cert, "COORDINATOR_ETCD_KEY_FILE": key}
    return {name: str(path) for name, path in given.items() if path is not None}


def _https(w: World) -> str:
    return f"https://127.0.0.1:{w.tls_port}"


CASES = {
    "no-ca": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": _https(w),
                       **_files(cert=w.tls.client_cert_file, key=w.tls.client_key_file)},
        problem="unknown-ca",
        says=lambda w: f"etcd at {_https(w)} presented a certificate this client cannot verify (unable to get local "
        "issuer certificate): no CA is configured",
        fix=lambda w: "set COORDINATOR_ETCD_CA_FILE to the CA that signed etcd's server certificate (the file etcd's "
        f"--cert-file chains to, often ca.crt; in Airflow's environment too, for the plugin); {CHART_CA}",
    ),
    "wrong-ca": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": _https(w),
                       **_files(w.other.ca_file, w.tls.client_cert_file, w.tls.client_key_file)},
        problem="unknown-ca",
        says=lambda w: f"presented a certificate that COORDINATOR_ETCD_CA_FILE={w.other.ca_file} did not sign",
        fix=lambda w: "point COORDINATOR_ETCD_CA_FILE at the CA that signed etcd's server certificate (the file "
        f"etcd's --cert-file chains to; after a CA rotation, a bundle of the old and the new CA); {CHART_CA}",
    ),
    "no-client-cert": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": _https(w), **_files(w.tls.ca_file)},
        problem="client-cert",
        says=lambda w: f"etcd at {_https(w)} requires a client certificate (it runs with --client-cert-auth) and "
        "none is configured",
        fix=lambda w: f"set {PAIR} (in Airflow's environment too, for the plugin); {CHART_PAIR}",
    ),
    "client-cert-of-another-ca": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": _https(w),
                       **_files(w.tls.ca_file, w.other.client_cert_file, w.other.client_key_file)},
        problem="client-cert",
        says=lambda w: f"refused the client certificate COORDINATOR_ETCD_CERT_FILE={w.other.client_cert_file}",
        fix=lambda w: f"set {PAIR}; {CHART_PAIR}",
    ),
    "http-to-https-etcd": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": f"http://127.0.0.1:{w.tls_port}"},
        problem="tls-only",
        says=lambda w: f"etcd at 127.0.0.1:{w.tls_port} speaks only TLS",
        fix=lambda w: f"COORDINATOR_ETCD_ENDPOINTS={_https(w)} (or --etcd {_https(w)}) with COORDINATOR_ETCD_CA_FILE "
        f"set to etcd's CA (chart: etcd.endpoints={_https(w)} and etcd.tls.enabled=true with "
        "etcd.tls.existingSecret)",
    ),
    "https-to-plain-etcd": Case(
        env=lambda w: {"COORDINATOR_ETCD_ENDPOINTS": f"https://127.0.0.1:{w.plain_port}", **_files(w.tls.ca_file)},
        problem="not-tls",
        says=lambda w: f"etcd at 127.0.0.1:{w.plain_port} does not speak TLS",
        fix=lambda w: f"COORDINATOR_ETCD_ENDPOINTS=http://127.0.0.1:{w.plain_port} (or --etcd "
        f"http://127.0.0.1:{w.plain_port}; chart: etcd.endpoints=http://127.0.0.1:{w.plain_port} and "
        "etcd.tls.enabled=false), or enable TLS on etcd and keep https://",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, etcd_server: EtcdServer) -> Iterator[World]:
    """An etcd over TLS that requires client certificates (stopped at the end, also on failure), the certificates of
    another CA, and the session's plain etcd."""
    base = tmp_path_factory.mktemp("tls")
    tls, other = make_certs(base / "etcd"), make_certs(base / "other", ca_name="other-ca")
    with EtcdServer(tls=tls, unsafe_no_fsync=True) as server:
        assert server.client_port is not None and etcd_server.client_port is not None
        yield World(tls, other, server.client_port, etcd_server.client_port)


def _settings(env: dict[str, str]) -> EtcdSettings:
    def path(name: str) -> Path | None:
        return Path(env[name]) if name in env else None

    return EtcdSettings(
        endpoints=parse_endpoints(env["COORDINATOR_ETCD_ENDPOINTS"]), ca_file=path("COORDINATOR_ETCD_CA_FILE"),
        cert_file=path("COORDINATOR_ETCD_CERT_FILE"), key_file=path("COORDINATOR_ETCD_KEY_FILE"), timeout_s=3.0,
    )  # fmt: skip


def _env(etcd: dict[str, str]) -> dict[str, str]:
    """A command's environment with these etcd settings (an Airflow nobody answers at: etcd fails first)."""
    env = cli_env("unused", "/tls-test", "http://127.0.0.1:9")
    env.pop("GRPC_VERBOSITY", None)  # the command itself must keep the C core quiet
    env.update(etcd, COORDINATOR_HTTP="off", PYTHONPATH=str(ROOT))
    return env


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_the_adapter_names_the_tls_mistake_and_its_fix(world: World, name: str) -> None:
    """EtcdStore.connect raises StoreTlsError naming the problem, what is wrong, and the complete fix line."""
    case = CASES[name]
    with pytest.raises(StoreTlsError) as caught:
        run_coro(EtcdStore.connect(_settings(case.env(world))))
    assert caught.value.problem == case.problem, caught.value
    assert case.says(world) in str(caught.value)
    assert caught.value.fix == case.fix(world)


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_doctor_prints_the_tls_fix(world: World, name: str) -> None:
    """doctor fails its etcd check with the mistake named and its own fix line, never "start etcd there"."""
    case = CASES[name]
    env = _env(case.env(world))
    check = checks_of(run_inproc(["doctor", "--format", "json"], env=env))["etcd"]
    assert check["status"] == "fail" and case.says(world) in check["summary"], check
    assert check["fix"] == case.fix(world), check
    text = run_inproc(["doctor"], env=env)
    assert text.returncode == 1
    assert f"       fix: {case.fix(world)}" in text.stdout.splitlines(), text.stdout
    assert "start etcd there" not in text.stdout


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_watch_exits_2_with_the_tls_fix_and_no_grpc_core_line(world: World, name: str) -> None:
    """`coordinator watch` exits 2 with what is wrong and its fix line, and no gRPC C-core line on stderr."""
    case = CASES[name]
    command = [sys.executable, "-m", "coordinator.cli", "watch", "--id", f"w-{name}"]
    done = subprocess.run(command, env=_env(case.env(world)), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert case.says(world) in done.stderr, done.stderr
    assert f"fix: {case.fix(world)}" in done.stderr.splitlines(), done.stderr
    assert "Is etcd running" not in done.stderr
    assert C_CORE_LINE.search(done.stderr) is None, done.stderr


def test_doctor_as_a_process_keeps_the_grpc_core_quiet(world: World) -> None:
    """doctor as a real process prints the fix and no line of gRPC's C core on stderr."""
    case = CASES["no-client-cert"]
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "doctor"], env=_env(case.env(world)),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 1 and f"fix: {case.fix(world)}" in done.stdout, done.stdout + done.stderr
    assert C_CORE_LINE.search(done.stderr) is None, done.stderr


def test_without_the_cli_the_grpc_core_prints_its_handshake_line(world: World) -> None:
    """Control: a process loading grpc without the CLI's GRPC_VERBOSITY gets the C core's handshake line on stderr."""
    env = _env(CASES["no-client-cert"].env(world))
    code = ("import asyncio, os, pathlib; from coordinator.etcd import EtcdStore; "
            "from coordinator.runtime.settings import EtcdSettings, parse_endpoints; "
            "s = EtcdSettings(endpoints=parse_endpoints(os.environ['COORDINATOR_ETCD_ENDPOINTS']), "
            "ca_file=pathlib.Path(os.environ['COORDINATOR_ETCD_CA_FILE'])); "
            "asyncio.run(EtcdStore.connect(s))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode != 0 and "StoreTlsError" in done.stderr, done.stderr
    assert C_CORE_LINE.search(done.stderr) is not None, done.stderr


def test_the_right_settings_reach_the_tls_etcd(world: World) -> None:
    """Control: the server's own CA and client pair reach it, and doctor's etcd check passes."""
    env = {"COORDINATOR_ETCD_ENDPOINTS": _https(world),
           **_files(world.tls.ca_file, world.tls.client_cert_file, world.tls.client_key_file)}  # fmt: skip

    async def revision() -> int:
        async with await EtcdStore.connect(_settings(env)) as store:
            return await store.current_revision()

    assert run_coro(revision()) >= 1
    check = checks_of(run_inproc(["doctor", "--format", "json"], env=_env(env)))
    assert check["etcd"]["status"] == "ok", check["etcd"]


WORDS = {
    "no-ca": ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: Tls handshake failed "
              "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
              "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK", "unknown-ca"),
    "same-named-ca": ("Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1a000064:ECDSA routines:"
                      "OPENSSL_internal:BAD_SIGNATURE: certificate signature failure: OK", "unknown-ca"),
    "expired": ("Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
                "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK", "server-cert-expired"),
    "client-cert": ("Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:10000412:SSL routines:"
                    "OPENSSL_internal:SSLV3_ALERT_BAD_CERTIFICATE: OK", "client-cert"),
    "tls13-certificate-required": ("SSL_ERROR_SSL: error:1000045c:SSL routines:OPENSSL_internal:"
                                   "TLSV1_ALERT_CERTIFICATE_REQUIRED", "client-cert"),
    "hostname": ("Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification Check "
                 "failed.", "hostname"),
    "handshake-read-failed": ("ipv4:127.0.0.1:2379: Handshake read failed (Socket closed)", None),
    "connection-refused": ("ipv4:127.0.0.1:2379: Failed to connect to remote host: Connection refused", None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(WORDS), ids=list(WORDS))
def test_classify_reads_grpcs_words(name: str) -> None:
    """classify names the problem from gRPC's words alone, and none where the words prove nothing without a probe."""
    text, problem = WORDS[name]
    settings = EtcdSettings(endpoints=parse_endpoints("https://127.0.0.1:2379"))
    found = classify(text, settings, 0)
    assert (found.problem if found is not None else None) == problem


def test_a_running_watch_names_a_rotated_ca_and_resumes_when_it_is_rotated_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch whose etcd returns with another CA's certificate logs etcd.tls_failed, then resumes losing nothing."""
    good, other = make_certs(tmp_path / "good"), make_certs(tmp_path / "other", ca_name="other-ca")
    served = make_certs(tmp_path / "served")  # the files etcd reads, overwritten to rotate

    def serve(source: ServerTls) -> None:
        for name in ("cert_file", "key_file", "ca_file", "client_cert_file", "client_key_file"):
            getattr(served, name).write_bytes(getattr(source, name).read_bytes())

    serve(good)
    with EtcdServer(tls=served, unsafe_no_fsync=True) as server:
        env = {"COORDINATOR_ETCD_ENDPOINTS": server.endpoint,
               **_files(good.ca_file, good.client_cert_file, good.client_key_file)}  # fmt: skip

        async def scenario() -> list[str]:
            seen: list[str] = []
            async with await EtcdStore.connect(_settings(env)) as store:
                start = await store.put("/rot/a", b"1")

                async def follow() -> None:
                    async for batch in store.watch_prefix("/rot/", start - 1, known=dict):
                        seen.extend(e.key for e in batch.events)

                task = asyncio.create_task(follow())
                try:
                    serve(other)
                    await asyncio.to_thread(server.restart)
                    async with asyncio.timeout(30):
                        while "etcd.tls_failed" not in caplog.text:
                            await asyncio.sleep(0.1)
                    serve(good)
                    await asyncio.to_thread(server.restart)
                    await store.put("/rot/b", b"2")
                    async with asyncio.timeout(30):
                        while "/rot/b" not in seen:
                            await asyncio.sleep(0.1)
                finally:
                    task.cancel()
            return seen

        with caplog.at_level(logging.ERROR, logger="coordinator.etcd"):
            assert run_coro(scenario()) == ["/rot/a", "/rot/b"]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("etcd.tls_failed"))
    assert f"endpoint={server.endpoint} problem=unknown-ca" in line, line
    assert "fix=\"point COORDINATOR_ETCD_CA_FILE at the CA that signed etcd's server certificate" in line, line


def test_an_operators_grpc_verbosity_wins(world: World) -> None:
    """GRPC_VERBOSITY set by the operator (to debug a handshake) is kept: the C core's line shows beside the fix."""
    case = CASES["no-client-cert"]
    env = {**_env(case.env(world)), "GRPC_VERBOSITY": "INFO"}
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "watch"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2 and f"fix: {case.fix(world)}" in done.stderr.splitlines(), done.stderr
    assert C_CORE_LINE.search(done.stderr) is not None, done.stderr


@pytest.mark.airflow
def test_check_plugin_names_the_tls_mistake_and_its_fix(world: World, tmp_path: Path) -> None:
    """check-plugin exits 1 with one error line naming the missing client certificate and its fix line."""
    case = CASES["no-client-cert"]
    env = {**_env(case.env(world)), "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "TMPDIR": str(tmp_path)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "check-plugin"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and case.says(world) in errors[0], done.stderr
    assert errors[0].endswith(f"; fix: {case.fix(world)}"), errors[0]
    assert C_CORE_LINE.search(done.stderr) is None, done.stderr
