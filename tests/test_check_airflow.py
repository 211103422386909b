"""``coordinator check-airflow INSTANCE`` and the instances file's auth validation, run as a user runs them.

Each failure the command must tell apart gets its own real cause on loopback: a name that does not resolve, a port
nothing listens on, https to a plain-http port, a self-signed certificate, a revoked token (401), a role without
read permission (403), a URL without the configured API version. Bad configuration exits 2 naming the instance and
the field.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coordinator.errors import ConfigError
from coordinator.runtime.settings import load_instances_file
from tests.support.auth_front import AuthFront, StaticTokens
from tests.support.cli_inproc import run_cli
from tests.support.fake_airflow import FakeAirflow

ROOT = Path(__file__).resolve().parents[1]


def check(
    instances: Path, name: str, env: dict[str, str] | None = None, *, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """``coordinator check-airflow NAME`` in the test process (tests/support/cli_inproc.py: the command's ``main()``,
    arguments, environment and working directory; a process per call cost ~0.6 s of CPU), or with ``process`` in a
    ``python -m coordinator.cli`` process of its own (an interpreter set up by ``env``)."""
    args = ["check-airflow", name, "--instances", str(instances), "--timeout", "5"]
    if not process:
        return run_cli(args, cwd=ROOT, env={**os.environ, **(env or {})})
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT, env={**os.environ, **(env or {})})  # fmt: skip


def write(tmp_path: Path, instances: dict[str, Any]) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(instances))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeAirflow]:
    with FakeAirflow(["d"]) as f:
        yield f


def test_check_passes_with_a_valid_bearer_token(fake: FakeAirflow, tmp_path: Path) -> None:
    """All steps pass: DNS, API v2 with the credential, DAG read, run read; exit 0."""
    token = tmp_path / "token"
    token.write_text("good")
    with AuthFront(fake.url, StaticTokens("good"), username="admin", password="admin", upstream_api="v2") as front:
        done = check(
            write(tmp_path, {"astro": {"url": front.url, "auth": {"method": "bearer", "token_file": str(token)}}}),
            "astro",
        )
    assert done.returncode == 0, done.stderr
    assert "API: " in done.stdout and "/api/v2 answers, Airflow 3.3.2 (credential sent: bearer)" in done.stdout
    assert "auth: bearer credential accepted; may read DAGs (e.g. d)" in done.stdout
    assert "permissions: may read runs of d" in done.stdout
    assert "good" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("dns", "DNS: cannot resolve 'no-such-host.invalid'", id="dns"),
        pytest.param("refused", "connection refused at 127.0.0.1:", id="connection-refused"),
        pytest.param("https-to-http", "TLS: handshake failed", id="tls-handshake"),
        pytest.param("self-signed", "TLS: the server's certificate is not trusted", id="tls-untrusted"),
        pytest.param(
            "revoked", "401 unauthenticated (reaching the API): the bearer credential was not accepted", id="401"
        ),
        pytest.param("no-role", "403 forbidden (reading DAGs): the bearer credential", id="403"),
        pytest.param("wrong-api", "wrong API version or URL (reaching the API)", id="wrong-api-version"),
    ],
)
def test_each_failure_has_its_precise_message_and_exit_1(
    case: str, expected: str, fake: FakeAirflow, tmp_path: Path, tls_server: str
) -> None:
    """The failing step is named with its cause; exit code 1; no traceback, no token."""
    token = tmp_path / "token"
    token.write_text("good")
    bearer = {"method": "bearer", "token_file": str(token)}
    tokens = StaticTokens("good")
    forbid = ("/api/v2/dags",) if case == "no-role" else ()
    with AuthFront(fake.url, tokens, username="admin", password="admin", upstream_api="v2", forbid=forbid) as front:
        url = {
            "dns": "http://no-such-host.invalid:8080",
            "refused": f"http://127.0.0.1:{free_port()}",
            "https-to-http": front.url.replace("http://", "https://"),
            "self-signed": tls_server,
        }.get(case, front.url)
        entry: dict[str, Any] = {"url": url, "auth": bearer}
        if case == "revoked":
            tokens.rotate("newer")
        if case == "wrong-api":
            entry["api"] = "v1"
        done = check(write(tmp_path, {"team": entry}), "team")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert expected in done.stderr, done.stderr
    assert done.stderr.startswith("error: team: ")
    assert "Traceback" not in done.stderr and "good" not in done.stderr


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    """An https server with a self-signed certificate for 127.0.0.1 (generated here)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Quiet)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        pytest.param(
            {"method": "kerberos"},
            "$.team.auth.method: 'kerberos'; expected one of password, bearer",
            id="unknown-method",
        ),
        pytest.param({}, "$.team.auth.method: missing; expected one of", id="no-method"),
        pytest.param(
            {"method": "exec"}, "$.team.auth.command: missing (method exec needs command)", id="exec-no-command"
        ),
        pytest.param(
            {"method": "exec", "command": "get-token"},
            "$.team.auth.command: expected a non-empty list of strings",
            id="exec-command-string",
        ),
        pytest.param(
            {"method": "aws_mwaa", "environment": "e"},
            "$.team.auth.region: missing (method aws_mwaa needs environment, region)",
            id="mwaa-no-region",
        ),
        pytest.param(
            {"method": "bearer", "token_env": "T", "token_file": "/x"},
            "$.team.auth: method bearer needs exactly one of token_env or token_file, not both",
            id="bearer-both",
        ),
        pytest.param(
            {"method": "bearer"},
            "$.team.auth: method bearer needs exactly one of token_env or token_file, not neither",
            id="bearer-neither",
        ),
        pytest.param(
            {"method": "bearer", "token_env": "COORDINATOR_TEST_UNSET_TOKEN"},
            "$.team.auth.token_env: environment variable COORDINATOR_TEST_UNSET_TOKEN is not set",
            id="bearer-env-unset",
        ),
        pytest.param(
            {"method": "bearer", "token_file": "/nonexistent/token"},
            "$.team.auth.token_file: cannot read /nonexistent/token",
            id="bearer-file-missing",
        ),
        pytest.param(
            {"method": "google", "scopes": ["x"]},
            "$.team.auth: unknown field(s) scopes for method google",
            id="unknown-field",
        ),
    ],
)
def test_bad_auth_config_exits_2_naming_instance_and_field(auth: dict[str, Any], expected: str, tmp_path: Path) -> None:
    """Every auth config mistake is exit 2 with the file, instance and field, before any request."""
    path = write(tmp_path, {"team": {"url": "http://127.0.0.1:9", "auth": auth}})
    done = check(path, "team")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"{path}: {expected}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_missing_google_extra_exits_2_with_the_pip_command(tmp_path: Path) -> None:
    """Without google-auth importable (hidden here), method google exits 2 saying how to install the extra."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    # sitecustomize runs at interpreter start: a finder that makes google.auth not importable, as if not installed.
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'google.auth' or name.startswith('google.auth.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    path = write(tmp_path, {"composer": {"url": "https://composer.example", "auth": {"method": "google"}}})
    done = check(path, "composer", env={"PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"}, process=True)
    assert done.returncode == 2, done.stderr
    assert "$.composer.auth.method: google needs the optional library google-auth, which is not" in done.stderr
    assert "pip install 'airflow-etcd-coordinator[google]'" in done.stderr


def test_missing_aws_extra_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without boto3 (find_spec says so), method aws_mwaa is a ConfigError with the [aws] install command."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "boto3" else real(name, *a))
    path = write(
        tmp_path,
        {"mwaa": {"url": "https://x.example", "auth": {"method": "aws_mwaa", "environment": "e", "region": "r"}}},
    )
    with pytest.raises(
        ConfigError,
        match=r"\$\.mwaa\.auth\.method: aws_mwaa needs the optional library boto3.*"
        r"pip install 'airflow-etcd-coordinator\[aws\]'",
    ):
        load_instances_file(path)


def test_username_with_another_method_is_refused(tmp_path: Path) -> None:
    """username/password fields with a non-password method are a ConfigError (which credential would win?)."""
    path = write(tmp_path, {"t": {"url": "http://x", "username": "a", "auth": {"method": "none"}}})
    with pytest.raises(ConfigError, match=r"\$\.t: username/password fields belong to method password, not none"):
        load_instances_file(path)


def test_unknown_instance_exits_2_listing_the_configured_ones(tmp_path: Path) -> None:
    """check-airflow of a name the instances file lacks: exit 2 with the configured names."""
    done = check(write(tmp_path, {"a": {"url": "http://x"}, "b": {"url": "http://y"}}), "c")
    assert done.returncode == 2
    assert "unknown instance 'c'; configured: a, b" in done.stderr


def test_todays_fields_keep_working_as_method_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry without auth (username + password_env) loads as method password, unchanged."""
    monkeypatch.setenv("PW_FOR_TEST", "pw")
    loaded = load_instances_file(
        write(tmp_path, {"a": {"url": "http://x", "username": "u", "password_env": "PW_FOR_TEST"}})
    )
    assert loaded["a"].auth.method == "password"
    assert loaded["a"].username == "u"


def test_max_calls_is_read_per_instance_and_a_bad_one_names_its_field(tmp_path: Path) -> None:
    """An entry's "max_calls" bounds that instance's calls in flight (none: the global setting); 0 or a string stops
    the load naming the file, the instance and the field."""
    loaded = load_instances_file(write(tmp_path, {"a": {"url": "http://x", "max_calls": 4}, "b": {"url": "http://y"}}))
    assert (loaded["a"].max_calls, loaded["b"].max_calls) == (4, None)
    for bad in (0, "many", 2.5, True):
        path = write(tmp_path, {"a": {"url": "http://x", "max_calls": bad}})
        with pytest.raises(ConfigError, match=r"instances\.json: \$\.a\.max_calls: expected a whole number of calls"):
            load_instances_file(path)
