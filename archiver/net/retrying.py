"""The retry policy of §5.3 as tenacity objects: which errors, how long to wait, how often."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_random_exponential

from archiver.errors import ConnectionFault, Throttled, TransientError

log = logging.getLogger("archiver.call")

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


def _failure(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome else None


def during_outage(exc: BaseException | None) -> bool:
    """A try that got no answer while its host answered nobody (net/reachability.py): it was
    waited for already, and costs its call no attempt."""
    return isinstance(exc, ConnectionFault) and exc.outage


def wait_for(state: RetryCallState) -> float:
    """What the server asked for when it said so, nothing after an outage's wait, else
    full-jitter exponential backoff."""
    exc = _failure(state)
    if isinstance(exc, Throttled) and exc.retry_after is not None:
        return exc.retry_after
    if during_outage(exc):
        return 0.0
    return float(_backoff(state))


class _StopAfter:
    """Stop once `attempts` tries have failed, tries during an outage not counted (their
    number is bounded by the outage's own deadline instead: max_outage)."""

    def __init__(self, attempts: int) -> None:
        self._left = attempts

    def __call__(self, state: RetryCallState) -> bool:
        if not during_outage(_failure(state)):
            self._left -= 1
        return self._left <= 0


def call_retrying(
    max_attempts: int,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """A fresh policy per call (tenacity's statistics are not safe to share across calls).

    Only a positive predicate: a negative one would retry CancelledError (tenacity #529).
    """
    return AsyncRetrying(
        stop=_StopAfter(max_attempts),
        retry=retry_if_exception_type(TransientError),
        wait=wait_for,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


@dataclass
class Attempts:
    """What one call's attempts have seen, kept per call (tenacity's statistics are shared)."""

    call_id: str
    count: int = 0
    not_audio: bool = False
    on_throttled: Callable[[], None] | None = None
    on_retry: Callable[[str], None] | None = None  # told each retried attempt's error kind

    def retrying(self, state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome else None
        if isinstance(exc, Throttled) and self.on_throttled is not None:
            self.on_throttled()  # fewer calls in flight while the server pushes back
        if self.on_retry is not None:
            self.on_retry(str(getattr(exc, "kind", type(exc).__name__)))
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug(
            "call %s attempt %d: %s; retrying in %.1fs",
            self.call_id,
            self.count,
            exc,
            wait,
            extra={
                "event": "retry",
                "call_id": self.call_id,
                "attempt": self.count,
                "error_kind": getattr(exc, "kind", type(exc).__name__),
                "wait_seconds": round(wait, 3),
            },
        )
