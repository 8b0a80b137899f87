"""The lease of a bucket destination (destinations/store/lease.py) and the abort of a
cancelled upload, against the S3 server: the conditional puts themselves, not a mock of them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from obstore.store import S3Store

from archiver.config.out_dir import parse_store_url
from archiver.destinations.store.bucket import StoreDestination
from archiver.destinations.store.client import StoreError
from archiver.destinations.store.lease import Lease
from archiver.destinations.store.uploads import UPLOAD_CHUNK, finished_or_aborted
from archiver.errors import ArchiveLocked
from tests.clocks import VirtualClock
from tests.destinations.store.conftest import S3
from tests.destinations.store.faults import FaultProxy, Rule

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


async def test_an_expired_lease_is_taken_over_and_its_old_holder_loses_it(s3: S3) -> None:
    """Expiry by the store's clock: a lock not renewed for a whole lease (2 s here)."""
    old = Lease(store_for(s3), KEY, "s3://b/p", seconds=2)
    old.acquire()
    new = Lease(store_for(s3), KEY, "s3://b/p", seconds=2)
    with pytest.raises(ArchiveLocked, match="runs"):
        new.acquire()
    await asyncio.sleep(3.1)  # Last-Modified counts whole seconds
    new.acquire()
    with pytest.raises(ArchiveLocked, match="lost its lease"):
        await old.renew()
    await new.renew()
    old.release()  # not its lease any more: left alone
    assert f"p/{KEY}" in s3.keys("p/")
    new.release()
    assert s3.keys("p/") == []


def test_a_reader_whose_clock_is_ahead_never_takes_over_a_live_lease(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21: a machine 300 s ahead took over a live lease at once (expiry was judged on
    the reader's clock). Only the store's clock counts now."""
    holder = Lease(store_for(s3), KEY, "s3://b/p")
    holder.acquire()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 300)
    ahead = Lease(store_for(s3), KEY, "s3://b/p")
    with pytest.raises(ArchiveLocked, match=r"runs (59|60) s more"):
        ahead.acquire()
    assert not [k for k in s3.keys("p/") if ".clock-" in k]  # its clock object is gone


async def test_a_renewal_whose_reply_was_lost_keeps_the_lease(s3: S3, proxy: FaultProxy) -> None:
    """Issue 21: the store applied the conditional renewal, its reply was lost, the client's
    retry failed its own If-Match: that was a false 'lost its lease', exit 75. The lock is
    read: still ours, at its new ETag. The same for the first take."""
    store = S3Store(s3.bucket, prefix="p", endpoint=proxy.endpoint, region="us-east-1",
                    client_options={"allow_http": True})  # fmt: skip
    lease = Lease(store, KEY, "s3://b/p")
    proxy.add(Rule(lambda m, k, q: m == "PUT" and k.endswith(KEY), "hold", times=1))
    lease.acquire()  # the create applied, its reply lost, the retry: "already exists"
    proxy.add(Rule(lambda m, k, q: m == "PUT" and k.endswith(KEY), "hold", times=1))
    await lease.renew()  # applied, reply lost, the retry: "precondition failed"
    await lease.renew()  # and the ETag it goes on from is the right one
    assert lease.lost() is None
    held = [s for s in proxy.requests("PUT") if s.key.endswith(KEY)]
    assert len(held) >= 4  # create, its retry, renewal, its retry, renewal
    lease.release()
    assert s3.keys("p/") == []


async def test_the_fence_stops_the_run_before_the_lease_can_expire_and_then_keeps_the_lock(
    s3: S3, proxy: FaultProxy
) -> None:
    """Issue 21: every lock PUT failing fast (503): the loss was declared after the expiry
    (the fence was looked at only after each renewal), another run took over, and this one
    then deleted the other's lock. The fence has a timer of its own; the lock is left."""
    store = S3Store(s3.bucket, prefix="p", endpoint=proxy.endpoint, region="us-east-1",
                    client_options={"allow_http": True},
                    retry_config={"max_retries": 0})  # fmt: skip
    clock = VirtualClock()
    lease = Lease(store, KEY, "s3://b/p", seconds=60, monotonic=clock, sleep=clock.sleep)
    lease.acquire()
    driving = asyncio.create_task(clock.run())
    proxy.add(Rule(lambda m, k, q: m == "PUT" and k.endswith(KEY), "fail", times=None,
                   status=503, code="SlowDown", message="slow down"))  # fmt: skip
    told = asyncio.Event()
    stamps: list[float] = []

    def lost_now() -> None:
        stamps.append(clock.now)  # when the fence fired, on the lease's own clock
        told.set()

    lease.on_lost(lost_now)
    async with lease.kept():
        await asyncio.wait_for(told.wait(), 20)
    driving.cancel()
    (lost_at,) = stamps
    lost = lease.lost()
    assert lost is not None
    assert "could not renew" in str(lost)
    assert 45 <= lost_at < 47  # FENCE of the lease, well before its 60 s
    lease.release()
    assert s3.keys("p/") == [f"p/{KEY}"]  # never deleted: it may be another run's by now


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
