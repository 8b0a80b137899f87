"""The retry policy of §5.3 as tenacity objects: which errors, how long to wait, how often."""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from archiver.errors import Throttled, TransientError

# A server may ask for any wait; past this we try again anyway (a nightly job has a window).
MAX_RETRY_AFTER = 900.0
_backoff = wait_random_exponential(multiplier=0.5, max=30)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from `Retry-After`: delta-seconds or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return min(max(0.0, moment.timestamp() - now), MAX_RETRY_AFTER)


def wait_for(state: RetryCallState) -> float:
    """What the server asked for when it said so, else full-jitter exponential backoff."""
    outcome = state.outcome
    exc = outcome.exception() if outcome else None
    if isinstance(exc, Throttled) and exc.retry_after is not None:
        return exc.retry_after
    return float(_backoff(state))


def call_retrying(
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """A fresh policy per call (tenacity's statistics are not safe to share across calls).

    Only a positive predicate: a negative one would retry CancelledError (tenacity #529).
    """
    return AsyncRetrying(
        stop=stop_after_attempt(max_attempts),
        retry=retry_if_exception_type(TransientError),
        wait=wait_for,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
