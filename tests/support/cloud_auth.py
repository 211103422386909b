"""Set-ups of the cloud auth methods for tests: a Google service-account file and an MWAA environment, both local.

- :func:`google_service_account`: a service-account JSON file with a fresh RSA key (generated here, never stored)
  whose ``token_uri`` is a local :class:`~tests.support.auth_front.GoogleTokenEndpoint`; the environment variables
  google-auth reads (``GOOGLE_APPLICATION_CREDENTIALS``) point at it.
- :func:`mwaa_environment`: the environment variables real boto3 reads to reach the local
  :class:`~tests.support.auth_front.MwaaApi` (``AWS_ENDPOINT_URL_MWAA``) with dummy credentials, and nothing from the
  user's own AWS configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def google_service_account(directory: Path, token_uri: str) -> dict[str, str]:
    """Write the key file; return the environment google-auth needs to find it (and nothing of the real gcloud)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = directory / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "coordinator-test",
                "private_key_id": "test-key-1",
                "private_key": pem,
                "client_email": "coordinator@coordinator-test.iam.gserviceaccount.com",
                "client_id": "100000000000000000001",
                "token_uri": token_uri,
            }
        )
    )
    path.chmod(0o600)
    return {
        "GOOGLE_APPLICATION_CREDENTIALS": str(path),
        # never ask a metadata server or the user's gcloud configuration
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "CLOUDSDK_CONFIG": str(directory / "gcloud"),
        "NO_GCE_CHECK": "True",
    }


def mwaa_environment(directory: Path, api_url: str) -> dict[str, str]:
    """boto3's view of the world: the local MWAA API and dummy static credentials."""
    return {
        "AWS_ENDPOINT_URL_MWAA": api_url,
        "AWS_ACCESS_KEY_ID": "AKIATESTTESTTESTTEST",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "AWS_CONFIG_FILE": str(directory / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(directory / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
