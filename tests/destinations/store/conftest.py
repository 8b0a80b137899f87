"""A real S3-compatible server for the bucket destination's tests: moto's server mode, run
in-process on loopback (a thread), one per test session; each test gets a bucket of its own.

moto (5.2) supports what the destination relies on: multipart uploads (and aborting them,
and listing those in progress), create-only puts (If-None-Match: *) and puts conditional on an
ETag (If-Match), and user metadata. It checks no signature: the credentials below are
placeholders, which the tests also look for in every output.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.destinations.store.faults import FaultProxy, fault_proxy

# Placeholders, but distinctive: a test fails if either shows up in any output.
ACCESS_KEY = "AKIAOSVITESTKEY00001"
SECRET_KEY = "osvi-test-secret-key-do-not-leak-0001"


@dataclass
class S3:
    endpoint: str
    client: Any  # boto3's S3 client, to look at the bucket behind the tool's back
    bucket: str

    def url(self, prefix: str = "archive") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def settings(self) -> dict[str, Any]:
        return {"store_endpoint": self.endpoint, "store_allow_http": True,
                "store_region": "us-east-1"}  # fmt: skip

    def env(self) -> dict[str, str]:
        """The store's settings and credentials as a cron line or a pod gives them."""
        return {"OSVI_STORE_ENDPOINT": self.endpoint, "OSVI_STORE_ALLOW_HTTP": "true",
                "OSVI_STORE_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY}  # fmt: skip

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def body(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def metadata(self, key: str) -> dict[str, str]:
        found: dict[str, str] = self.client.head_object(Bucket=self.bucket, Key=key)["Metadata"]
        return found

    def uploads(self) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted."""
        found = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [u["Key"] for u in found]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh bucket; the store's credentials in this process's environment (as the
    standard chain reads them)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    bucket = f"osvi-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=bucket)
    return S3(s3_server, client, bucket)


@pytest.fixture
def proxy(s3: S3) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test's bucket (tests/store/faults.py): point the tool's
    store_endpoint at `proxy.endpoint`."""
    with fault_proxy(s3.endpoint, s3.bucket) as running:
        yield running
