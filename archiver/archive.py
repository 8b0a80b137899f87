"""Archiving one call (§5): fresh URL, download, verify, commit; retried as one unit.

Every attempt asks the API for a new URL and uses it at once, so a retry never meets an
expired URL; what the attempts end in is a `CallRecord`, never an exception, except for
run-level failures (401, local disk errors) that must stop the whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tenacity import RetryCallState

from archiver.api import OsviApi
from archiver.download import Downloaded, Downloader, Transfer
from archiver.errors import CallError, NotAudio, NotAudioOnce, NotAvailable, UrlRefused
from archiver.retrying import call_retrying
from archiver.state import CallRecord, utc_now
from archiver.storage import ensure_folder, part_path, render_layout
from archiver.urls import check_recording_url

log = logging.getLogger("archiver.call")
# Statuses of calls nobody answered: they never get a recording (osvi-api/README.md).
UNANSWERED = frozenset({"not_picked", "busy", "failed"})


@dataclass(frozen=True)
class CallPolicy:
    """The settings one call needs."""

    out_dir: Path
    layout: str
    file_mode: int
    max_attempts: int
    pending_window: float
    allow_insecure_urls: bool


class CallArchiver:
    def __init__(
        self,
        policy: CallPolicy,
        api: OsviApi,
        downloader: Downloader,
        *,
        run_id: str,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        on_part: Callable[[str, str], None] = lambda call_id, relative_part: None,
    ) -> None:
        self._on_part = on_part  # told (call id, .part path) before the .part is created
        self._policy = policy
        self._api = api
        self._downloader = downloader
        self._run_id = run_id
        self._clock = clock
        self._sleep = sleep

    async def archive(self, call_id: str, fields: Mapping[str, str] | None = None) -> CallRecord:
        """Archive `call_id`; `fields` are layout values known from a listing."""
        attempts = Attempts(call_id)
        transfer = self._downloader.transfer(lambda ext: self._destination(call_id, ext, fields))
        try:
            retrying = call_retrying(self._policy.max_attempts, self._sleep, attempts.retrying)
            async for attempt in retrying:
                with attempt:
                    await self._attempt(call_id, transfer, attempts)
            done = await transfer.commit()
        except NotAvailable as exc:
            return await self._not_available(call_id, attempts.count, exc)
        except CallError as exc:
            log.warning("call %s failed after %d attempts: %s", call_id, attempts.count, exc)
            return self._record(call_id, "failed", attempts.count, error=exc)
        finally:
            await transfer.discard()
        return self._archived(call_id, attempts.count, done)

    async def _attempt(self, call_id: str, transfer: Transfer, attempts: Attempts) -> None:
        attempts.count += 1
        recording = await self._api.recording_url(call_id)
        check_recording_url(recording.url, self._policy.allow_insecure_urls)
        if self._clock() > recording.usable_until():
            raise UrlRefused("the API was too slow: the URL was too old to use when it arrived")
        try:
            await transfer.fetch(recording.url)
        except NotAudioOnce as exc:
            if attempts.not_audio:
                raise NotAudio(str(exc)) from exc
            attempts.not_audio = True
            raise
        try:
            transfer.verify()
        except CallError:
            await transfer.discard()
            raise

    def _destination(self, call_id: str, ext: str, fields: Mapping[str, str] | None) -> Path:
        relative = render_layout(
            self._policy.layout, {**(fields or {}), "call_id": call_id, "ext": ext}
        )
        path = self._policy.out_dir / relative
        ensure_folder(path.parent)
        self._on_part(call_id, part_path(Path(relative)).as_posix())
        return path

    async def _not_available(self, call_id: str, attempts: int, exc: NotAvailable) -> CallRecord:
        """§5.4: pending while the call is young enough that the recording may still come."""
        try:
            detail = await self._api.call(call_id)
        except CallError as lookup:
            # Age unknown for now: pending is the choice that loses nothing (tried again later).
            message = f"{exc}; the call's age could not be read ({lookup})"
            return self._record(
                call_id, "pending", attempts, error=NotAvailable(message), kind="pending"
            )
        if detail is None or detail.get("status") in UNANSWERED:
            # Unknown to the API, or never answered: no recording will ever come.
            return self._record(call_id, "not_available", attempts, error=exc)
        started = _parse_time(detail.get("call_picked_at") or detail.get("created_at"))
        if started is not None and self._clock() - started < self._policy.pending_window:
            return self._record(call_id, "pending", attempts, error=exc, kind="pending")
        return self._record(call_id, "not_available", attempts, error=exc)

    def _archived(self, call_id: str, attempts: int, done: Downloaded) -> CallRecord:
        return CallRecord(
            call_id=call_id,
            status="archived",
            path=done.path.relative_to(self._policy.out_dir).as_posix(),
            bytes=done.bytes,
            sha256=done.sha256,
            content_type=done.content_type or None,
            archived_at=utc_now(),
            attempts=attempts,
            run_id=self._run_id,
        )

    def _record(
        self, call_id: str, status: str, attempts: int, *, error: CallError, kind: str | None = None
    ) -> CallRecord:
        return CallRecord(
            call_id=call_id,
            status=status,
            attempts=attempts,
            run_id=self._run_id,
            error_kind=kind or error.kind,
            error_message=str(error),
        )


@dataclass
class Attempts:
    """What one call's attempts have seen, kept per call (tenacity's statistics are shared)."""

    call_id: str
    count: int = 0
    not_audio: bool = False

    def retrying(self, state: RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug("call %s attempt %d: %s; retrying in %.1fs", self.call_id, self.count, exc, wait)


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo else None
