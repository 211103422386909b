"""The ``aws_mwaa`` auth method (Amazon MWAA, Airflow 2 and 3 environments): a web login token for a session.

``mwaa.create_web_login_token`` (boto3, extra ``[aws]``; IAM ``airflow:CreateWebLoginToken``) returns a web token
valid for 60 s; a form POST ``token=<it>`` to the web server's ``/aws_mwaa/login`` (the instance's ``url``: the
environment's ``WebServerHostname``) answers with the session cookie(s) that later API calls carry. The session is
renewed the same way after a 401/403. ``InvokeRestApi`` is not used: it limits the path to 64 characters, too short
for ``.../dagRuns/{run_id}/clear`` with real names.

boto3 finds AWS credentials its usual way (environment, shared config and profiles, the instance or pod role) and is
synchronous, so it runs in a worker thread with explicit timeouts.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from coordinator.airflow.auth import Credential, Exchange
from coordinator.airflow.runs import ApiVersion
from coordinator.errors import AirflowAuthError, AirflowUnavailable

LOGIN_PATH = "/aws_mwaa/login"
#: AWS error codes that mean "try again later", not "refused".
_TRANSIENT = frozenset({"ThrottlingException", "InternalServerException", "ServiceUnavailableException"})


def _endpoint_overridden() -> bool:
    """A custom MWAA endpoint is configured (a local stand-in, a VPC endpoint given as a URL).

    botocore prefixes the host of CreateWebLoginToken with ``env.`` (the real service's host for it); for an
    endpoint given as a URL (``http://127.0.0.1:PORT``) that prefix makes a name that does not resolve, so it is
    turned off there and only there.
    """
    return bool(os.environ.get("AWS_ENDPOINT_URL_MWAA") or os.environ.get("AWS_ENDPOINT_URL"))


class MwaaMethod:
    """The MWAA web server's session, from a fresh web login token."""

    name = "aws_mwaa"
    depends_on_api = False

    def __init__(self, instance: str, environment: str, region: str, timeout_s: float) -> None:
        self._instance = instance
        self._environment = environment
        self._region = region
        self._timeout_s = timeout_s
        self._client: Any = None

    def refreshable(self, api: ApiVersion | None) -> bool:
        return True

    async def obtain(self, api: ApiVersion | None, exchange: Exchange) -> Credential:
        web_token = await asyncio.to_thread(self._web_token)
        resp = await exchange.request("POST", LOGIN_PATH, data={"token": web_token})
        if resp.status_code >= 500 or resp.status_code == 429:
            raise exchange.error("POST", LOGIN_PATH, resp)
        if resp.status_code >= 400:
            raise self._refused(
                f"POST {LOGIN_PATH} -> {resp.status_code}: the web server refused the web login token "
                f"(does the identity have an Airflow role in environment {self._environment!r}?)",
                resp.status_code,
            )
        cookies = _set_cookies(resp.headers.get_list("set-cookie"))
        if not cookies:
            raise self._refused(f"POST {LOGIN_PATH} -> {resp.status_code} set no session cookie", resp.status_code)
        header = "; ".join(f"{name}={value}" for name, value in cookies)
        return Credential({"Cookie": header}, secrets=(web_token, *(value for _, value in cookies)))

    def _web_token(self) -> str:
        where = f"create_web_login_token for environment {self._environment!r} in {self._region}"
        try:
            if self._client is None:
                config = botocore.config.Config(
                    connect_timeout=self._timeout_s,
                    read_timeout=self._timeout_s,
                    retries={"max_attempts": 2, "mode": "standard"},
                    inject_host_prefix=not _endpoint_overridden(),
                )
                self._client = boto3.session.Session().client("mwaa", region_name=self._region, config=config)
            answer = self._client.create_web_login_token(Name=self._environment)
        except botocore.exceptions.NoCredentialsError as exc:
            raise self._refused(f"{where}: no AWS credentials found ({exc})") from exc
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            if code in _TRANSIENT:
                raise AirflowUnavailable(f"{self._instance}: aws_mwaa auth: {where}: {code}: {message}") from exc
            raise self._refused(f"{where} refused: {code}: {message}") from exc
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError) as exc:  # fmt: skip
            raise AirflowUnavailable(f"{self._instance}: aws_mwaa auth: {where}: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._refused(f"{where}: {exc}") from exc
        token = answer.get("WebToken")
        if not isinstance(token, str) or not token:
            raise self._refused(f"{where}: the answer holds no WebToken")
        return token

    def _refused(self, text: str, status: int = 0) -> AirflowAuthError:
        return AirflowAuthError(f"{self._instance}: aws_mwaa auth: {text}", status)


def _set_cookies(headers: list[str]) -> list[tuple[str, str]]:
    """``name=value`` of each Set-Cookie header, skipping cookies being deleted (empty value)."""
    cookies: list[tuple[str, str]] = []
    for header in headers:
        name, _, value = header.split(";", 1)[0].strip().partition("=")
        if name and value:
            cookies.append((name.strip(), value.strip()))
    return cookies
