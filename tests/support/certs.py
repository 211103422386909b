"""Certificates for a TLS etcd in tests: a CA, a server certificate for 127.0.0.1 and a client pair, all signed by the
CA (``devtools.etcd_server.ServerTls``). ``cryptography`` arrives with the airflow extra, not the dev one: a test
without it is skipped (visibly, -ra) rather than failed."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest

from devtools.etcd_server import ServerTls


def make_certs(directory: Path, ca_name: str = "test-ca") -> ServerTls:
    """A CA named ``ca_name`` in ``directory``, a server certificate for IP 127.0.0.1 and a client certificate, all
    signed by it; valid from five minutes ago for a day."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path.with_suffix(".crt"), path.with_suffix(".key")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name(ca_name))
        .issuer_name(name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, _ = write(directory / "ca", ca_key, ca)

    def leaf(cn: str, usage: list[x509.ObjectIdentifier], san: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return write(directory / cn, key, builder.sign(ca_key, hashes.SHA256()))

    # etcd's own HTTP gateway dials the gRPC port with the server pair, so it must also be valid for client auth.
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    server_cert, server_key = leaf("server", both, san=True)
    client_cert, client_key = leaf("client", [ExtendedKeyUsageOID.CLIENT_AUTH], san=False)
    return ServerTls(server_cert, server_key, ca_file, client_cert, client_key)
