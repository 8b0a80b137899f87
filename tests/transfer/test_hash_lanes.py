"""Hash lanes (transfer/hash_lanes.py): a large body written and hashed in order on threads
of its own, the loop never waiting on one batch; against cancellation, a failed write, resume
and a body cut short (issue 23)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import threading
from pathlib import Path

import pytest

from archiver.archive.storage import PartFile
from archiver.errors import DiskFull
from archiver.fake import FakeConfig, Fault, FaultKind
from archiver.transfer import download, hash_lanes
from archiver.transfer.body_checks import Digests
from archiver.transfer.hash_lanes import HashLanes
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import archive, assert_byte_exact, picked_ids

PLAIN_MD5 = '"' + "0" * 32 + '"'  # an ETag that can be an MD5: both lanes run


def batches(count: int, size: int = 4096) -> list[bytes]:
    return [bytes([n % 251]) * size for n in range(count)]


def held_writes(lanes: HashLanes) -> threading.Event:
    """Every write of the lanes waits until the event returned is set."""
    gate = threading.Event()
    real = lanes._part.write_now

    def held(data: bytes) -> None:
        gate.wait(10)
        real(data)

    lanes._part.write_now = held  # type: ignore[method-assign]
    return gate


async def lanes_on(tmp_path: Path, limit: int, etag: str | None = PLAIN_MD5) -> HashLanes:
    part = await PartFile.create(tmp_path / "x.part", 0o600)
    return HashLanes(part, Digests(etag), lambda exc: part.write_error(exc, None), limit)


async def test_the_part_and_both_digests_hold_exactly_the_batches_in_order(
    tmp_path: Path,
) -> None:
    lanes = await lanes_on(tmp_path, limit=3 * 4096)
    data = batches(40)
    for batch in data:
        await lanes.put(batch)
        assert lanes.held <= 3 * 4096  # a download's memory stays bounded
    await lanes.drain()
    await lanes._part.close()
    body = b"".join(data)
    assert (tmp_path / "x.part").read_bytes() == body
    assert lanes._part.size == len(body)
    assert lanes._digests.sha256.hexdigest() == hashlib.sha256(body).hexdigest()
    assert lanes._digests.md5 is not None
    assert lanes._digests.md5.hexdigest() == hashlib.md5(body).hexdigest()


async def test_without_an_md5_etag_only_the_writer_lane_runs(tmp_path: Path) -> None:
    lanes = await lanes_on(tmp_path, limit=1 << 20, etag='"' + "0" * 32 + '-3"')
    assert lanes._md5 is None
    for batch in batches(5):
        await lanes.put(batch)
    await lanes.drain()
    await lanes._part.close()
    assert lanes._digests.md5 is None
    body = b"".join(batches(5))
    assert lanes._digests.sha256.hexdigest() == hashlib.sha256(body).hexdigest()


async def test_the_loop_does_not_wait_on_a_batch_under_the_limit(tmp_path: Path) -> None:
    lanes = await lanes_on(tmp_path, limit=1 << 20)
    gate = held_writes(lanes)
    for batch in batches(4):
        await asyncio.wait_for(lanes.put(batch), 1)  # returns with the writes still held
    assert lanes._part.size == 0
    assert lanes.held == 4 * 4096
    gate.set()
    await lanes.drain()
    assert lanes._part.size == 4 * 4096
    await lanes._part.close()


async def test_a_failed_write_stops_every_later_write_and_is_raised(tmp_path: Path) -> None:
    lanes = await lanes_on(tmp_path, limit=1 << 20)
    real = lanes._part.write_now
    writes = [0]

    def full_at_the_second(data: bytes) -> None:
        writes[0] += 1
        if writes[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(data)

    lanes._part.write_now = full_at_the_second  # type: ignore[method-assign]

    async def receive() -> None:
        try:
            for batch in batches(6):
                await lanes.put(batch)
        finally:
            await lanes.drain()  # raises it too, when no put did

    with pytest.raises(DiskFull):
        await receive()
    await lanes._part.close()
    # No gap: the first batch only, never the third after the failed second.
    assert (tmp_path / "x.part").read_bytes() == batches(1)[0]
    assert writes[0] == 2


async def test_a_cancelled_download_drains_its_lanes_before_the_cancellation_goes_on(
    tmp_path: Path,
) -> None:
    lanes = await lanes_on(tmp_path, limit=2 * 4096)
    gate = held_writes(lanes)

    async def receive() -> None:
        try:
            for batch in batches(10):
                await lanes.put(batch)  # waits: over the limit while the writer is held
        finally:
            await lanes.drain()

    task = asyncio.create_task(receive())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the threads, the .part still open under them
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await lanes._part.close()
    written = (tmp_path / "x.part").read_bytes()
    assert len(written) == lanes._part.size
    assert lanes._digests.sha256.hexdigest() == hashlib.sha256(written).hexdigest()
    assert lanes._digests.md5 is not None
    assert lanes._digests.md5.hexdigest() == hashlib.md5(written).hexdigest()


async def test_a_cancellation_never_drops_a_batch_still_queued_in_its_lane(
    tmp_path: Path,
) -> None:
    lanes = await lanes_on(tmp_path, limit=4096)
    gate = threading.Event()
    lanes._writer.submit(gate.wait, 10)  # the writer's thread busy: the batches wait queued

    async def receive() -> None:
        try:
            for batch in batches(3):
                await lanes.put(batch)  # over the limit at once: waits on a queued batch
        finally:
            await lanes.drain()

    task = asyncio.create_task(receive())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await lanes._part.close()
    written = (tmp_path / "x.part").read_bytes()
    given = b"".join(batches(len(written) // 4096))
    assert written == given  # what was given, in order, from the first batch: no gap
    assert lanes._digests.sha256.hexdigest() == hashlib.sha256(written).hexdigest()


@pytest.mark.parametrize("lane", ["writer", "md5"])
async def test_a_lane_that_raises_anything_stops_its_writes_and_the_error_is_raised(
    tmp_path: Path, lane: str
) -> None:
    lanes = await lanes_on(tmp_path, limit=1 << 20)
    calls = [0]
    if lane == "writer":
        real = lanes._part.write_now

        def breaks(data: bytes) -> None:
            calls[0] += 1
            if calls[0] == 2:
                raise MemoryError("no memory for the write")
            real(data)

        lanes._part.write_now = breaks  # type: ignore[method-assign]
    else:
        md5 = lanes._digests.md5
        assert md5 is not None

        class Broken:
            def update(self, data: bytes) -> None:
                raise MemoryError("no memory for the MD5")

        lanes._digests.md5 = Broken()  # type: ignore[assignment]
        del md5

    async def receive() -> None:
        try:
            for batch in batches(4):
                await lanes.put(batch)
        finally:
            await lanes.drain()

    with pytest.raises(MemoryError):
        await receive()
    await lanes._part.close()
    written = (tmp_path / "x.part").read_bytes()
    assert written == b"".join(batches(len(written) // 4096))  # no gap, whatever failed


async def test_what_arrived_counts_each_byte_once_while_the_lanes_write(tmp_path: Path) -> None:
    lanes = await lanes_on(tmp_path, limit=1 << 20)
    for batch in batches(4):
        await lanes.put(batch)
    await asyncio.sleep(0.2)  # written by now, the batches not yet known done on the loop
    assert lanes._part.size == 4 * 4096
    assert lanes.start + lanes.handed == 4 * 4096
    await lanes.drain()
    await lanes._part.close()


@pytest.fixture
def small_lanes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every body through the lanes, in many small batches, the loop waiting often."""
    monkeypatch.setattr(download, "WRITE_SIZE", 4096)
    monkeypatch.setattr(download, "LANES_FROM", 0)
    monkeypatch.setattr(hash_lanes, "LANE_LIMIT", 3 * 4096)


@pytest.mark.usefixtures("small_lanes")
@pytest.mark.parametrize(
    ("kind", "ignore_range"),
    [(FaultKind.CUT, False), (FaultKind.RESET, False), (FaultKind.RESET, True)],
    ids=["cut-resumed", "reset-resumed", "reset-started-over"],
)
async def test_bodies_through_the_lanes_resume_or_restart_byte_exact(
    make_fake: FakeFactory, tmp_path: Path, kind: FaultKind, ignore_range: bool
) -> None:
    config = FakeConfig(
        calls=8,
        size_min=100_000,
        size_max=300_000,
        ignore_range=ignore_range,
        faults={kind: Fault(rate=1.0)},
    )
    fake = await make_fake(config)
    result = await archive(fake, tmp_path, concurrency=4)
    assert result.exit_code == 0, result.error
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    resumed = fake.stats.statuses["download:206"]
    assert resumed == (0 if ignore_range else len(picked_ids(fake)))
