from __future__ import annotations

import asyncio
import email.utils

import pytest
from tenacity import AsyncRetrying, RetryCallState

from archiver.errors import (
    ApiRejected,
    AuthError,
    BodyIncomplete,
    ConnectionFault,
    LocalError,
    NotAudio,
    NotAvailable,
    PermanentError,
    ServerError,
    Throttled,
    TransientError,
    UrlRefused,
)
from archiver.net.retrying import MAX_RETRY_AFTER, call_retrying, parse_retry_after, wait_for

NOW = 1_700_000_000.0


class SleepSpy:
    """An injected sleep: records what was asked and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Flaky:
    """Raises the given errors one per call, then returns "done"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def state_after(exc: BaseException, attempt: int) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return state


# parse_retry_after


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("7", 7.0), (" 120 ", 120.0)])
def test_parse_retry_after_reads_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_reads_an_http_date_relative_to_now() -> None:
    assert parse_retry_after(http_date(NOW + 30), NOW) == 30.0


def test_parse_retry_after_uses_the_given_now_not_the_wall_clock() -> None:
    moment = http_date(NOW + 100)
    assert parse_retry_after(moment, NOW + 40) == 60.0


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(http_date(NOW - 3600), NOW) == 0.0


@pytest.mark.parametrize("value", ["99999", str(int(MAX_RETRY_AFTER) + 1)])
def test_parse_retry_after_caps_seconds_at_the_maximum(value: str) -> None:
    assert parse_retry_after(value, NOW) == MAX_RETRY_AFTER


def test_parse_retry_after_caps_a_far_http_date_at_the_maximum() -> None:
    assert parse_retry_after(http_date(NOW + 86_400), NOW) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "-5", "1.5", "12abc", "Someday, 99 Foo 2024 GMT"]
)
def test_parse_retry_after_is_none_for_absent_or_garbage(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_parse_retry_after_is_none_for_non_ascii_digits() -> None:
    # "²".isdigit() is True but float("²") raises: garbage must give None, never an exception.
    assert parse_retry_after("²", NOW) is None


# wait_for


def test_wait_for_honours_throttled_retry_after() -> None:
    assert wait_for(state_after(Throttled("429", retry_after=42.0), attempt=1)) == 42.0


def test_wait_for_honours_a_zero_retry_after() -> None:
    assert wait_for(state_after(Throttled("429", retry_after=0.0), attempt=3)) == 0.0


@pytest.mark.parametrize("attempt", range(1, 21))
@pytest.mark.parametrize(
    "exc", [Throttled("429", retry_after=None), ServerError("500"), ConnectionFault("reset")]
)
def test_wait_for_backs_off_within_zero_and_thirty_seconds(
    exc: TransientError, attempt: int
) -> None:
    waits = [wait_for(state_after(exc, attempt)) for _ in range(20)]
    assert all(0.0 <= w <= 30.0 for w in waits)


def test_wait_for_first_backoff_is_short() -> None:
    waits = [wait_for(state_after(ServerError("500"), 1)) for _ in range(50)]
    assert max(waits) <= 1.0


def test_wait_for_backoff_is_jittered() -> None:
    waits = {wait_for(state_after(ServerError("500"), 8)) for _ in range(50)}
    assert len(waits) > 1


# call_retrying


async def test_call_retrying_retries_transient_errors_until_success() -> None:
    sleep = SleepSpy()
    fn = Flaky(ServerError("500"), ConnectionFault("reset"), BodyIncomplete("short"))
    assert await call_retrying(6, sleep)(fn) == "done"
    assert fn.calls == 4
    assert len(sleep.calls) == 3


async def test_call_retrying_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    sleep = SleepSpy()
    last = UrlRefused("403 from the host")
    fn = Flaky(ServerError("1"), ServerError("2"), last, ServerError("never reached"))
    with pytest.raises(UrlRefused) as caught:
        await call_retrying(3, sleep)(fn)
    assert caught.value is last
    assert fn.calls == 3
    assert len(sleep.calls) == 2


async def test_tries_during_an_outage_cost_no_attempt_and_no_backoff() -> None:
    """The outage was waited for already (net/reachability.py): a try made during it neither
    counts against max_attempts nor waits again; a try that fails on its own does both."""
    sleep = SleepSpy()
    outages = [ConnectionFault("no answer", outage=True) for _ in range(10)]
    fn = Flaky(*outages, ServerError("1"), ServerError("2"))
    assert await call_retrying(3, sleep)(fn) == "done"
    assert fn.calls == 13
    assert sleep.calls[:10] == [0.0] * 10
    assert len(sleep.calls) == 12


async def test_own_connection_faults_still_use_up_the_attempts() -> None:
    fn = Flaky(*(ConnectionFault("reset") for _ in range(5)))
    with pytest.raises(ConnectionFault):
        await call_retrying(3, SleepSpy())(fn)
    assert fn.calls == 3


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("no"),
        ApiRejected("400"),
        NotAvailable("404"),
        NotAudio("html"),
        AuthError("401"),
        LocalError("disk full"),
        ValueError("a bug"),
    ],
)
async def test_call_retrying_does_not_retry_non_transient_errors(error: Exception) -> None:
    sleep = SleepSpy()
    fn = Flaky(error)
    with pytest.raises(type(error)) as caught:
        await call_retrying(6, sleep)(fn)
    assert caught.value is error
    assert fn.calls == 1
    assert sleep.calls == []


async def test_call_retrying_does_not_retry_cancelled_error() -> None:
    sleep = SleepSpy()
    fn = Flaky(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await call_retrying(6, sleep)(fn)
    assert fn.calls == 1
    assert sleep.calls == []


async def test_cancelling_a_task_inside_call_retrying_ends_it_without_a_retry() -> None:
    calls = 0
    started = asyncio.Event()

    async def hang() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    sleep = SleepSpy()
    task: asyncio.Task[None] = asyncio.create_task(call_retrying(6, sleep)(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert calls == 1
    assert sleep.calls == []


async def test_call_retrying_sleeps_through_the_injected_sleep_for_retry_after() -> None:
    sleep = SleepSpy()
    fn = Flaky(Throttled("429", retry_after=7.0), Throttled("429", retry_after=2.5))
    assert await call_retrying(6, sleep)(fn) == "done"
    assert sleep.calls == [7.0, 2.5]


async def test_call_retrying_calls_before_sleep_once_per_retry() -> None:
    seen: list[tuple[int, str]] = []

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seen.append((state.attempt_number, type(exc).__name__))

    fn = Flaky(ServerError("500"), ConnectionFault("reset"))
    assert await call_retrying(6, SleepSpy(), before_sleep)(fn) == "done"
    assert seen == [(1, "ServerError"), (2, "ConnectionFault")]


async def test_call_retrying_policies_count_attempts_independently() -> None:
    policy_a, policy_b = call_retrying(2, SleepSpy()), call_retrying(2, SleepSpy())
    fn_a, fn_b = Flaky(ServerError("a")), Flaky(ServerError("b"))
    assert await policy_a(fn_a) == "done"
    assert await policy_b(fn_b) == "done"
    assert (fn_a.calls, fn_b.calls) == (2, 2)
