"""Archiving one call (§5): fresh URL, download, verify, commit; retried as one unit.

Every attempt asks the API for a new URL and uses it at once, so a retry never meets an
expired URL. What the attempts end in is a `CallRecord`, never an exception: this is the
error boundary of one call. A `CallError` becomes the call's outcome with its kind; any other
exception (a bug, a library error nobody mapped) becomes `internal_error`, its traceback
logged at -v. Only run-level errors (`RunError`: a 401, a full disk, an unreachable API) and
cancellation pass through, to stop the whole run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from archiver.archive import layout as layouts
from archiver.archive.names import METADATA_SUFFIX, TRANSCRIPT_SUFFIX, part_path
from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard
from archiver.archive.storage import PartFile, ensure_folder, remove_quietly
from archiver.destinations.base import Destination, Stored
from archiver.engine.clocks import Clocks
from archiver.errors import (
    ApiRejected,
    CallError,
    InternalCallError,
    NotAudio,
    NotAudioOnce,
    NotAvailable,
    RunError,
    TransientError,
    as_call_error,
)
from archiver.monitoring.counts import Receiving
from archiver.net.retrying import Attempts, call_retrying
from archiver.osvi.api import OsviApi
from archiver.osvi.listing import UNANSWERED, layout_fields_of, started_at_of
from archiver.osvi.responses import JsonAnswer
from archiver.redaction import shorten
from archiver.state.call_records import CallRecord, utc_now
from archiver.transfer.body_checks import Downloaded
from archiver.transfer.download import Downloader, Transfer

log = logging.getLogger("archiver.call")
MAX_MESSAGE = 1000  # characters of an error message kept in the manifest and reports
# Statuses of calls nobody answered: they never get a recording (osvi-api/README.md).


@dataclass(frozen=True)
class CallPolicy:
    """The settings one call needs."""

    destination: Destination  # where the archive is: its `root` holds the `.part` files
    layout: str
    file_mode: int
    max_attempts: int
    pending_window: float
    with_metadata: bool = False
    with_transcript: bool = False
    shard: Shard | None = None  # a shard's run names its `.part` files after it


@dataclass(frozen=True)
class CallHooks:
    """What archiving a call tells the run as it goes (engine/assembly.py builds them from the state
    and the run's view; none: nobody is told)."""

    # Awaited with (call id, .part path) before the .part exists: registered durably.
    on_part: Callable[[str, str], Awaitable[None]] | None = None
    on_throttled: Callable[[], None] | None = None  # a 429: fewer calls in flight
    on_retry: Callable[[str], None] | None = None  # each retried attempt, by its error kind
    # Told an outcome that came as the run was cancelled: a file already in place.
    on_late: Callable[[CallRecord], None] | None = None
    # The transfers in flight, by call id, for displays.
    downloads: dict[str, Receiving] = field(default_factory=dict)


class CallArchiver:
    def __init__(
        self,
        policy: CallPolicy,
        api: OsviApi,
        downloader: Downloader,
        *,
        run_id: str,
        clocks: Clocks,
        hooks: CallHooks | None = None,
    ) -> None:
        hooks = hooks or CallHooks()
        self._on_retry = hooks.on_retry
        self._on_late = hooks.on_late
        self._downloads = hooks.downloads
        self._on_throttled = hooks.on_throttled
        self._on_part = hooks.on_part
        self._policy = policy
        self._api = api
        self._downloader = downloader
        self._run_id = run_id
        self._clock = clocks.wall
        self._sleep = clocks.sleep

    async def archive(
        self,
        call_id: str,
        fields: Mapping[str, str] | None = None,
        started_at: float | None = None,
    ) -> CallRecord:
        """Archive `call_id`. A listing tells its layout `fields` and when it started.

        Whatever fails in here is this call's outcome; only a `RunError` (and cancellation)
        is raised."""
        attempts = Attempts(call_id, on_throttled=self._on_throttled, on_retry=self._on_retry)
        try:
            return await self._archive(call_id, fields, started_at, attempts)
        except RunError:
            raise
        except Exception as exc:  # the boundary: nothing of one call escapes but RunError
            return self._failed(call_id, attempts.count, as_call_error(exc))

    def unanswered(self, call_id: str, status: str, started_at: float | None) -> CallRecord:
        """A call the listing says was never answered (`status`): not_available, final,
        without a request (it has no recording: asking would only cost two requests)."""
        error = NotAvailable(f"the listing says the call was not answered ({status}): no recording")
        record = self._record(call_id, Status.NOT_AVAILABLE, 0, error=error)
        return dataclasses.replace(record, started_at=started_at)

    async def _archive(
        self,
        call_id: str,
        fields: Mapping[str, str] | None,
        started_at: float | None,
        attempts: Attempts,
    ) -> CallRecord:
        detail: JsonAnswer | None = None
        if fields is None and layouts.needs_listing_fields(self._policy.layout):
            # The layout's date or agent comes from the call's metadata, fetched first, and
            # kept for its sidecar as it came: parsed, a large one would be held (many times
            # its size) through the download.
            detail = await self._fetch(call_id, self._api.detail, "call")
            fields, started_at = await self._placement(detail)
        record = await self._recording(call_id, fields, started_at, attempts)
        record = dataclasses.replace(record, started_at=started_at)  # `check` finds it by time
        if record.status != Status.ARCHIVED or record.path is None:
            return record
        return await add_sidecars(
            record, detail, self._policy, self._fetch, self._api, self._on_part
        )

    async def _recording(
        self,
        call_id: str,
        fields: Mapping[str, str] | None,
        started_at: float | None,
        attempts: Attempts,
    ) -> CallRecord:
        transfer = self._downloader.transfer(
            lambda ext: self._destination(call_id, ext, fields), call_id
        )
        self._downloads[call_id] = transfer
        try:
            await self._attempts(call_id, transfer, attempts)
            done = await self._commit(call_id, transfer, attempts)
        except NotAvailable as exc:
            return await self._not_available(call_id, attempts.count, exc, started_at)
        finally:
            self._downloads.pop(call_id, None)
            await transfer.discard()
        return self._archived(call_id, attempts.count, done)

    async def _attempts(self, call_id: str, transfer: Transfer, attempts: Attempts) -> None:
        """The attempts of one call under the retry policy (§5.3). The first is made without
        tenacity's machinery, built only when it failed (most calls need one attempt: issue
        23); its failure is then replayed as tenacity's first attempt, so the stop, the wait
        and what is logged are the policy's, as if tenacity had made it."""
        try:
            await self._attempt(call_id, transfer, attempts)
            return
        except TransientError as exc:
            first: TransientError | None = exc
        retrying = call_retrying(self._policy.max_attempts, self._sleep, attempts.retrying)
        async for attempt in retrying:
            with attempt:
                if first is not None:
                    replayed, first = first, None
                    raise replayed
                await self._attempt(call_id, transfer, attempts)

    async def _commit(self, call_id: str, transfer: Transfer, attempts: Attempts) -> Downloaded:
        """Publish the verified `.part` (a folder: fsync and rename into place, carried to
        its end even when the run is cancelled meanwhile, the rename running in a thread; a
        store: upload, aborted when cancelled unless complete already). A file put in place
        is then recorded (`on_late`) before the cancellation goes on, so the state never
        misses a recording that is in the archive."""
        destination = self._policy.destination

        async def publish(part: PartFile, done: Downloaded) -> None:
            relative = done.path.relative_to(destination.root).as_posix()
            stored = Stored(call_id, done.sha256, done.bytes, done.content_type or None)
            await destination.publish(part, relative, stored)

        task = asyncio.ensure_future(transfer.commit(publish))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if destination.aborts_on_cancel:  # an upload: aborted, unless already complete
                task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is None and self._on_late:
                self._on_late(self._archived(call_id, attempts.count, task.result()))
            raise

    def _failed(self, call_id: str, attempts: int, error: CallError) -> CallRecord:
        """The call's final failure: logged (an internal error's traceback at -v), recorded."""
        log.error(
            "call %s failed %s: %s",
            call_id,
            f"after {attempts} attempt{'' if attempts == 1 else 's'}" if attempts else "early",
            error,
            extra={
                "event": "call_failed",
                "call_id": call_id,
                "attempt": attempts,
                "status": Status.FAILED.value,
                "error_kind": error.kind,
            },
        )
        if isinstance(error, InternalCallError):
            log.debug(
                "call %s: traceback of its internal error",
                call_id,
                exc_info=error.__cause__ or error,
                extra={"event": "internal_error", "call_id": call_id},
            )
        return self._record(call_id, Status.FAILED, attempts, error=error)

    async def _attempt(self, call_id: str, transfer: Transfer, attempts: Attempts) -> None:
        attempts.count += 1
        recording = await self._api.recording_url(call_id)
        try:
            await transfer.fetch(recording.url, recording.usable_until())
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

    async def _destination(
        self, call_id: str, ext: str, fields: Mapping[str, str] | None
    ) -> tuple[Path, Path]:
        """The final path and its `.part`, the latter registered before it exists."""
        relative = layouts.render(
            self._policy.layout, {**(fields or {}), "call_id": call_id, "ext": ext}
        )
        root = self._policy.destination.root
        path = root / relative
        ensure_folder(path.parent)
        part = part_path(Path(relative), self._policy.shard)
        if self._on_part is not None:
            await self._on_part(call_id, part.as_posix())
        return path, root / part

    async def _not_available(
        self, call_id: str, attempts: int, exc: NotAvailable, started_at: float | None
    ) -> CallRecord:
        """§5.4: pending while the call is young enough that the recording may still come;
        its age from the listing when known, else asked of the API once."""
        if started_at is not None:
            return self._by_age(call_id, attempts, exc, started_at)
        try:
            detail = await self._api.call(call_id)
        except CallError as lookup:
            # Age unknown for now: pending is the choice that loses nothing (tried again later).
            message = f"{exc}; the call's age could not be read ({lookup})"
            return self._record(
                call_id, Status.PENDING, attempts, error=NotAvailable(message), kind="pending"
            )
        if detail is None or detail.get("status") in UNANSWERED:
            # Unknown to the API, or never answered: no recording will ever come.
            return self._record(call_id, Status.NOT_AVAILABLE, attempts, error=exc)
        started = started_at_of(detail)
        if started is None:
            return self._record(call_id, Status.NOT_AVAILABLE, attempts, error=exc)
        return self._by_age(call_id, attempts, exc, started)

    def _by_age(self, call_id: str, attempts: int, exc: NotAvailable, started: float) -> CallRecord:
        # A start in the future (a clock ahead, a zone misread) is taken as now: pending.
        if max(0.0, self._clock() - started) < self._policy.pending_window:
            return self._record(call_id, Status.PENDING, attempts, error=exc, kind="pending")
        return self._record(call_id, Status.NOT_AVAILABLE, attempts, error=exc)

    async def _placement(self, detail: JsonAnswer) -> tuple[dict[str, str], float | None]:
        """The layout's fields and the start of a call, from its detail parsed in its turn."""
        async with self._api.parsing(detail):
            data = detail.data()
            return layout_fields_of(data), started_at_of(data)

    async def _fetch(
        self, call_id: str, get: Callable[[str], Awaitable[JsonAnswer | None]], what: str
    ) -> JsonAnswer:
        """A metadata request with the same retry policy as downloads; a 404 is a failure."""
        async for attempt in call_retrying(self._policy.max_attempts, self._sleep):
            with attempt:
                found = await get(call_id)
                if found is None:
                    raise ApiRejected(f"the API has no {what} data for this call (404)")
                return found
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _archived(self, call_id: str, attempts: int, done: Downloaded) -> CallRecord:
        return CallRecord(
            call_id=call_id,
            status=Status.ARCHIVED,
            path=done.path.relative_to(self._policy.destination.root).as_posix(),
            bytes=done.bytes,
            sha256=done.sha256,
            content_type=done.content_type or None,
            archived_at=utc_now(),
            attempts=attempts,
            run_id=self._run_id,
            md5_checked=done.md5_checked,
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
            error_message=shorten(str(error), MAX_MESSAGE),
        )


# A recording's sidecars (§5.5): the call's detail and its transcript, saved as JSON beside
# it, each through a registered `.part` like the recording itself.
#
# An answer is parsed only in its turn (api.OsviApi.parsing), and encoded and written a batch
# at a time while it is held: a detail of MiBs of small objects takes hundreds of MB once
# parsed (its indented text, several times its size), and a run's memory must stay bounded
# whatever the API sends. Parsed on the event loop, as every answer is: in worker threads,
# each thread's malloc arena kept what the parses had freed (RSS 580 MB against 410 MB for
# 8 MiB details at concurrency 16).

Getter = Callable[[str], Awaitable[JsonAnswer | None]]
Fetch = Callable[[str, Getter, str], Awaitable[JsonAnswer]]
_PIECES = 1 << 16  # pieces of the JSON encoder (keys, values, punctuation) per write


async def add_sidecars(
    record: CallRecord,
    detail: JsonAnswer | None,
    policy: CallPolicy,
    fetch: Fetch,
    api: OsviApi,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> CallRecord:
    """§5.5: `<stem>.call.json` and `<stem>.transcript.json` beside the recording, each
    written atomically (`detail`: the call's, when it was fetched already). If one cannot be
    had, the call is failed (its recording stays on disk and is downloaded again by the next
    run), so nothing claims more than it has."""
    assert record.path is not None
    stem = PurePosixPath(record.path).with_suffix("")
    saved: dict[str, str] = {}
    wanted = (
        ("metadata_path", policy.with_metadata, METADATA_SUFFIX, api.detail, "call"),
        ("transcript_path", policy.with_transcript, TRANSCRIPT_SUFFIX, api.transcript,
         "transcript"),
    )  # fmt: skip
    for key, enabled, suffix, get, what in wanted:
        if not enabled:
            continue
        answer = detail if key == "metadata_path" and detail else None
        answer = answer or await fetch(record.call_id, get, what)
        relative = f"{stem}{suffix}"
        await _save_json(policy, api, record.call_id, relative, answer, on_part)
        saved[key] = relative
    return dataclasses.replace(
        record,
        metadata_path=saved.get("metadata_path"),
        transcript_path=saved.get("transcript_path"),
    )


async def _save_json(
    policy: CallPolicy,
    api: OsviApi,
    call_id: str,
    relative: str,
    answer: JsonAnswer,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> None:
    """A sidecar, written as recordings are: through a `.part` registered before it exists
    (so that a crash leaves nothing the next run does not remove), then renamed."""
    part = part_path(Path(relative), policy.shard)
    if on_part is not None:
        await on_part(call_id, part.as_posix())
    root = policy.destination.root
    kind = "metadata" if relative.endswith(METADATA_SUFFIX) else "transcript"
    handle = await PartFile.create(root / part, policy.file_mode)
    try:
        digest = hashlib.sha256()
        async with api.parsing(answer):
            for chunk in _encoded(answer):  # the parsed answer lives only in here
                await handle.write(chunk, None, digest.update)
        stored = Stored(call_id, digest.hexdigest(), handle.size, "application/json", kind)
        await policy.destination.publish(handle, relative, stored)
    except BaseException:
        await handle.close()
        await remove_quietly(handle.path)
        raise


def _encoded(answer: JsonAnswer) -> Iterator[bytes]:
    """The answer's data as the sidecar holds it (indented JSON, a line break at the end),
    _PIECES pieces of the encoder at a time; ApiBadResponse when the answer is not one."""
    pieces = json.JSONEncoder(indent=2).iterencode(answer.data())
    while batch := "".join(itertools.islice(pieces, _PIECES)):
        yield batch.encode()
    yield b"\n"
