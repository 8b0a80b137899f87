"""The lease of a bucket destination (lease.py) and the abort of a cancelled upload, against
the S3 server: the conditional puts themselves, not a mock of them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from obstore.store import S3Store

from archiver.errors import ArchiveLocked
from archiver.lease import Lease
from archiver.location import parse_store_url
from archiver.objectstore import StoreDestination
from archiver.storeerrors import StoreError
from archiver.uploads import UPLOAD_CHUNK, finished_or_aborted
from tests.store.conftest import S3
from tests.store.faults import FaultProxy, Rule

KEY = ".osvi-archiver/lock"


def store_for(s3: S3, prefix: str = "p") -> S3Store:
    return S3Store(s3.bucket, prefix=prefix, endpoint=s3.endpoint, region="us-east-1",
                   client_options={"allow_http": True})  # fmt: skip


def test_of_two_runs_taking_the_lease_one_wins(s3: S3) -> None:
    first, second = (Lease(store_for(s3), KEY, "s3://b/p") for _ in range(2))
    first.acquire()
    with pytest.raises(ArchiveLocked, match=r"runs 6\d s more"):
        second.acquire()
    first.release()
    second.acquire()  # released: free at once
    assert json.loads(s3.body(f"p/{KEY}"))["pid"] == os.getpid()


def test_an_expired_lease_is_taken_over_and_its_old_holder_loses_it(s3: S3) -> None:
    now = [1000.0]
    old = Lease(store_for(s3), KEY, "s3://b/p", clock=lambda: now[0])
    old.acquire()
    now[0] += 61  # the old holder stopped renewing for longer than a lease
    new = Lease(store_for(s3), KEY, "s3://b/p", clock=lambda: now[0])
    new.acquire()
    with pytest.raises(ArchiveLocked, match="lost its lease"):
        old.renew()
    new.renew()
    old.release()  # not its lease any more: left alone
    assert f"p/{KEY}" in s3.keys("p/")
    new.release()
    assert s3.keys("p/") == []


async def test_a_lost_lease_is_seen_and_told(s3: S3) -> None:
    lease = Lease(store_for(s3), KEY, "s3://b/p", seconds=0.3)
    lease.acquire()
    told = asyncio.Event()
    lease.on_lost(told.set)
    async with lease.kept():
        s3.client.put_object(Bucket=s3.bucket, Key=f"p/{KEY}", Body=b"{}")  # taken over
        await asyncio.wait_for(told.wait(), 10)
    lost = lease.lost()
    assert lost is not None
    assert lost.exit_code == 75
    assert "lost its lease" in str(lost)


async def test_a_lease_that_cannot_be_renewed_for_most_of_its_time_is_given_up(
    s3: S3,
) -> None:
    """The store unreachable: another run may take the lease over once it expires, so this
    one stops before (FENCE of the lease)."""
    now = [0.0]
    lease = Lease(store_for(s3), KEY, "s3://b/p", seconds=0.3, clock=lambda: now[0])
    lease.acquire()
    lease._store = store_for(s3, prefix="p")  # keep the lock readable by the test
    unreachable = S3Store("x-unreachable", endpoint="http://127.0.0.1:9", region="us-east-1",
                          client_options={"allow_http": True, "timeout": "1s"},
                          retry_config={"max_retries": 0})  # fmt: skip
    lease._store = unreachable
    told = asyncio.Event()
    lease.on_lost(told.set)
    async with lease.kept():
        now[0] += 0.3  # the renewals fail for a whole lease
        await asyncio.wait_for(told.wait(), 10)
    lost = lease.lost()
    assert lost is not None
    assert "could not renew" in str(lost)


async def test_a_kept_lease_is_renewed(s3: S3) -> None:
    lease = Lease(store_for(s3), KEY, "s3://b/p", seconds=0.3)
    lease.acquire()
    first = s3.client.head_object(Bucket=s3.bucket, Key=f"p/{KEY}")["ETag"]
    async with lease.kept():
        await asyncio.sleep(0.5)
    assert s3.client.head_object(Bucket=s3.bucket, Key=f"p/{KEY}")["ETag"] != first
    lease.release()


async def test_a_cancelled_upload_is_aborted_at_once_even_with_a_slow_part_in_flight(
    s3: S3, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Issue 21: a part at 100 KB/s, cancelled mid-part: the abort (one request) goes at
    once, the part in flight is dropped, nothing is left in the store."""
    store = S3Store(s3.bucket, prefix="p", endpoint=proxy.endpoint, region="us-east-1",
                    client_options={"allow_http": True})  # fmt: skip
    dest = StoreDestination(parse_store_url(f"s3://{s3.bucket}/p"), store, tmp_path)
    big = tmp_path / "big.part"
    big.write_bytes(os.urandom(UPLOAD_CHUNK + 300))
    proxy.add(Rule(lambda m, k, q: "partNumber" in q, "slow", times=None, rate=100_000))
    work = asyncio.ensure_future(dest.upload(big, "big.mp4", UPLOAD_CHUNK + 300, {}))
    task = asyncio.ensure_future(finished_or_aborted(work, "big.mp4"))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if s3.uploads():
            break
    assert s3.uploads() == ["p/big.mp4"]
    await asyncio.sleep(0.5)  # the part is under way: 50 s at this rate
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    assert s3.uploads() == []
    assert s3.keys("p/") == []
    assert [s.method for s in proxy.requests() if "uploadId" in s.query][-1] == "DELETE"


def test_what_a_failed_upload_leaves_is_nothing(s3: S3, tmp_path: Path) -> None:
    """A put the store refuses (no such bucket) is a StoreError naming the key, no secret."""
    missing = S3Store("no-such-bucket-x", prefix="p", endpoint=s3.endpoint,
                      region="us-east-1", client_options={"allow_http": True})  # fmt: skip
    dest = StoreDestination(parse_store_url("s3://no-such-bucket-x/p"), missing, tmp_path)

    with pytest.raises(StoreError, match=r"cannot write s3://no-such-bucket-x/p/m.json: "):
        dest.write("m.json", [b"{}"], 0o600)
