from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from archiver.osvi.limits import RateLimiter, ThrottleGate


class FakeClock:
    """Time that moves only when someone sleeps.

    A sleeper wakes at the moment it asked for (never earlier than the clock already is), so
    several concurrent sleepers see the same timeline a real event loop would give them.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake = self.now + seconds
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()
        await asyncio.sleep(0)
        self.now = max(self.now, wake)


# RateLimiter


def test_rate_limiter_refuses_a_non_positive_rate() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0, clock, clock.sleep)
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(-1, clock, clock.sleep)


async def test_rate_limiter_lets_the_first_acquisition_through_at_once() -> None:
    clock = FakeClock()
    await RateLimiter(10, clock, clock.sleep).acquire()
    assert clock.sleeps == []
    assert clock.now == 1000.0


async def test_rate_limiter_spaces_sequential_acquisitions_one_interval_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock, clock.sleep)
    times = []
    for _ in range(5):
        await limiter.acquire()
        times.append(clock())
    assert times == pytest.approx([1000.0, 1000.1, 1000.2, 1000.3, 1000.4])


async def test_rate_limiter_spaces_concurrent_acquisitions_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock, clock.sleep)
    granted: list[tuple[int, float]] = []

    async def worker(n: int) -> None:
        await limiter.acquire()
        granted.append((n, clock()))

    await asyncio.gather(*(worker(n) for n in range(5)))
    assert [n for n, _ in sorted(granted, key=lambda g: g[1])] == [0, 1, 2, 3, 4]
    assert sorted(t for _, t in granted) == pytest.approx(
        [1000.0, 1000.25, 1000.5, 1000.75, 1001.0]
    )
    assert clock.sleeps == pytest.approx([0.25, 0.5, 0.75, 1.0])


async def test_rate_limiter_does_not_bank_idle_time_into_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock, clock.sleep)
    await limiter.acquire()
    clock.now += 60  # idle for a minute
    await limiter.acquire()
    await limiter.acquire()
    assert clock.sleeps == pytest.approx([0.5])
    assert clock.now == pytest.approx(1060.5)


# ThrottleGate


async def test_gate_that_was_never_paused_lets_everyone_through_at_once() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock, clock.sleep)
    await gate.wait()
    assert clock.sleeps == []


async def test_gate_pause_holds_every_waiter_until_the_moment() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock, clock.sleep)
    gate.pause(5)
    released: list[float] = []

    async def waiter() -> None:
        await gate.wait()
        released.append(clock())

    await asyncio.gather(*(waiter() for _ in range(4)))
    assert released == pytest.approx([1005.0] * 4)


async def test_gate_opens_again_once_the_moment_has_passed() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock, clock.sleep)
    gate.pause(5)
    clock.now += 5
    await gate.wait()
    assert clock.sleeps == []


def test_gate_takes_the_latest_of_overlapping_pauses() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock, clock.sleep)
    gate.pause(10)
    gate.pause(3)
    assert gate.paused_until == 1010.0
    clock.now += 2
    gate.pause(20)
    assert gate.paused_until == 1022.0


async def test_gate_waiter_keeps_waiting_when_the_pause_is_extended_meanwhile() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock, clock.sleep)
    gate.pause(5)
    # While the waiter sleeps, another worker gets a 429 asking for 8 s from t=1000.
    clock.on_sleep = lambda: gate.pause(8)
    await gate.wait()
    assert clock() == pytest.approx(1008.0)
    assert clock.sleeps == pytest.approx([5.0, 3.0])


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _no_sleep(_: float) -> None:
    return None


def test_rate_drops_once_a_second_and_grows_back_to_its_ceiling() -> None:
    from archiver.osvi.limits import RateLimiter

    clock = _Clock()
    limiter = RateLimiter(100, clock, _no_sleep)
    limiter.slow_down()
    limiter.slow_down()  # the same burst of 429s: counted once
    assert limiter.rate == pytest.approx(70)
    clock.now = 1.5
    limiter.slow_down()
    assert limiter.rate == pytest.approx(49)
    for _ in range(20):
        limiter.slow_down()
        clock.now += 1
    assert limiter.rate == 100 / 8  # the floor
    for _ in range(10_000):
        limiter.speed_up()
    assert limiter.rate == 100


def simulate(limit: float, ceiling: float, seconds: float) -> tuple[float, int]:
    """A server that throttles above `limit` requests in the trailing second and asks for a
    one-second pause (Retry-After: 1, as the fake does), and a client sending as fast as its
    RateLimiter lets it: (requests answered per second, throttles)."""
    from archiver.osvi.limits import RateLimiter

    clock = _Clock()
    limiter = RateLimiter(ceiling, clock, _no_sleep)
    recent: list[float] = []
    answered = throttled = 0
    while clock.now < seconds:
        clock.now += 1 / limiter.rate
        recent = [t for t in recent if t > clock.now - 1] + [clock.now]
        if len(recent) > limit:
            recent.pop()
            throttled += 1
            limiter.slow_down()
            clock.now += 1.0  # the pause the 429 asked for
        else:
            answered += 1
            limiter.speed_up()
    return answered / seconds, throttled


def test_rate_settles_just_under_a_servers_limit_with_few_throttles() -> None:
    # Halving and a linear climb gave 30 answers/s and 33 throttles here.
    rate, throttled = simulate(limit=50, ceiling=200, seconds=120)
    assert 0.8 * 50 <= rate <= 50
    assert throttled <= 20


async def test_in_flight_window_halves_on_throttling_and_recovers_additively() -> None:
    import asyncio

    from archiver.osvi.limits import InFlight

    clock = _Clock()
    window = InFlight(8, clock)
    window.throttled()
    assert int(window.limit) == 4
    held = [asyncio.ensure_future(window.__aenter__()) for _ in range(5)]
    await asyncio.sleep(0)
    assert sum(task.done() for task in held) == 4  # the fifth waits for a slot
    await window.__aexit__()
    await asyncio.sleep(0)
    assert all(task.done() for task in held)
    for _ in range(100):
        window.succeeded()
    assert window.limit == 8
    clock.now = 2.0
    for _ in range(10):
        window.throttled()
        clock.now += 1.0
    assert window.limit == 2  # a quarter of the ceiling, at least
