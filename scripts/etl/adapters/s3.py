"""The one place that builds an S3 client. Always through endpoint_url when one is set, exactly
as against AWS; AWS_PROFILE selects an SSO profile in production."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from etl.core.errors import SourceError


def client(cfg, service: str = "s3", endpoint_url: str | None = None):
    endpoint = endpoint_url if endpoint_url is not None else cfg["S3_ENDPOINT_URL"]
    try:
        session = boto3.Session(profile_name=cfg["AWS_PROFILE"] or None, region_name=cfg["AWS_REGION"])
    except Exception as exc:  # botocore ProfileNotFound and friends
        raise SourceError(f"AWS profile {cfg['AWS_PROFILE']!r} cannot be used: {exc}",
                          hint="run `aws configure sso` or fix AWS_PROFILE") from None
    kwargs = {}
    host = urlsplit(endpoint).hostname if endpoint else None
    if host in ("127.0.0.1", "localhost", "::1") and session.get_credentials() is None:
        # A server on this machine (the local S3 for the demo) needs no AWS account.
        kwargs = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    boto_cfg = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    return session.client(service, endpoint_url=endpoint or None, config=boto_cfg, **kwargs)


def describe_error(exc: Exception) -> str:
    """A short, secret-free description of a botocore error."""

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip(": ")
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to {exc.kwargs.get('endpoint_url', 'the endpoint')}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (run `aws sso login` or set AWS_PROFILE)"
    return type(exc).__name__
