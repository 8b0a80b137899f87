"""bandwidth.Bandwidth: the run's total download rate, with time injected."""

from __future__ import annotations

import asyncio

import pytest

from archiver.transfer.bandwidth import MIN_BURST, Bandwidth


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_rate_holds_over_many_chunks_from_many_streams() -> None:
    clock = Clock()
    limit = Bandwidth(1 << 20, clock.monotonic, clock.sleep)  # 1 MiB/s
    chunk = 64 << 10

    async def stream() -> None:
        for _ in range(64):  # 4 MiB each
            await limit.take(chunk)

    await asyncio.gather(*(stream() for _ in range(4)))  # 16 MiB in all
    expected = (16 * (1 << 20) - limit.burst) / (1 << 20)
    assert clock.now == pytest.approx(expected, rel=0.01)


async def test_a_burst_goes_through_without_a_wait_and_a_large_chunk_is_paid_in_full() -> None:
    clock = Clock()
    limit = Bandwidth(1 << 20, clock.monotonic, clock.sleep)
    assert await limit.take(MIN_BURST) == 0.0
    waited = await limit.take(2 << 20)  # larger than the bucket: never refused
    assert waited == pytest.approx(2.0)
    clock.now += 10  # idle: the bucket refills to its burst, no more
    assert await limit.take(int(limit.burst)) == 0.0
    assert await limit.take(1 << 20) == pytest.approx(1.0)


def test_a_limit_is_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        Bandwidth(0, lambda: 0.0)


def test_bwlimit_takes_rclones_units() -> None:
    from archiver.config.settings import load_settings

    assert load_settings({"bwlimit": "10M"}, config_path=None, environ={}).bwlimit == 10 << 20
    assert load_settings({}, config_path=None, environ={"OSVI_BWLIMIT": "512k"}).bwlimit == (
        512 << 10
    )
    assert load_settings({}, config_path=None, environ={}).bwlimit == 0
