"""One `run`: lock the archive, open the state and both sessions, drive the pipeline, and
whatever happens, leave a manifest, a run report and metrics that tell the truth about it
(outputs.py); signals stop it cleanly (signals.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archiver.api import OsviApi, api_session
from archiver.archive import CallArchiver, CallPolicy
from archiver.counts import Counts, Progress, RunView
from archiver.decide import taken_first
from archiver.download import Downloader, DownloadPolicy, download_session
from archiver.errors import InternalError, Interrupted, RunError
from archiver.feed import BlockInput
from archiver.http import Proxies, guarded_resolver
from archiver.inputs import InputItem
from archiver.lag import watched
from archiver.limits import InFlight, RateLimiter, ThrottleGate
from archiver.lock import ArchiveLock
from archiver.manifest import write_manifest
from archiver.outputs import (
    STOPPING_BUDGET,
    Described,
    RunResult,
    finish,
    remove_stale_temps_of,
)
from archiver.pipeline import Pipeline, Source
from archiver.reachability import Hosts, Reachability
from archiver.settings import Settings, require_token
from archiver.shard import Shard, shard_label
from archiver.signals import stop_on_signals
from archiver.state import CallRecord, State, states_in, utc_now
from archiver.storage import ensure_folder
from archiver.urls import UrlRules

log = logging.getLogger("archiver.run")
# What `sync` passes instead of input: builds its listing source once the state and API exist
# (and tells the view the listing's total).
SourceFactory = Callable[[State, OsviApi, RunView], Source]
MANIFEST_INTERVAL = 60.0


@dataclass
class RunOptions:
    force: bool = False
    retry_failed: bool = False
    shard: Shard | None = None  # --shard K/N: only the ids whose shard is K
    total: int | None = None  # ids in the input, when counted (progress: done of total, ETA)
    command: str = "run"  # run or sync: a label of the metrics
    clock: Callable[[], float] = time.time  # wall clock: URL ages, Retry-After dates
    monotonic: Callable[[], float] = time.monotonic  # pacing: immune to wall-clock jumps
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Test hooks for both sessions: an aiohttp resolver (names without DNS), a TLS context.
    resolver: Any = None
    ssl_context: ssl.SSLContext | None = None


def new_run_id(now: float) -> str:
    """Sortable by start time (to the millisecond), unique by its random tail."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


async def execute(
    settings: Settings,
    items: Iterator[InputItem] | SourceFactory,
    progress: Progress,
    options: RunOptions,
) -> RunResult:
    """Run the archive job. Errors before the archive is locked and its state open are raised
    (nothing was done: no report); from then on every ending, signals and bugs included, is in
    the result, and the manifest, report and metrics written say its exit code."""
    require_token(settings)  # before anything else: a missing token is a usage error
    out_dir = settings.out_dir
    ensure_folder(out_dir)
    lock = ArchiveLock(out_dir, options.shard)
    lock.acquire()
    try:
        warn_other_sharding(out_dir, options.shard)
        with State(out_dir, shard=options.shard) as state:
            return await _run(settings, state, items, progress, options)
    finally:
        lock.release()


async def _run(
    settings: Settings,
    state: State,
    items: Iterator[InputItem] | SourceFactory,
    progress: Progress,
    options: RunOptions,
) -> RunResult:
    started, started_at = time.monotonic(), utc_now()
    result = RunResult(new_run_id(options.clock()), Counts(), 0.0)
    log.info(
        "run %s started: archive %s%s",
        result.run_id,
        settings.out_dir,
        f", shard {shard_label(options.shard)}" if options.shard else "",
        extra={
            "event": "run_started",
            "run_id": result.run_id,
            "out_dir": str(settings.out_dir),
            "shard": shard_label(options.shard) or None,
            "concurrency": settings.concurrency,
        },
    )
    view = RunView(result.counts, total=options.total)
    with stop_on_signals() as signals:
        described = Described(
            started_at,
            options.command,
            options.shard,
            options.clock,
            lambda: signals.stopping_for(STOPPING_BUDGET),
        )
        drive = signals.stops(
            asyncio.create_task(
                _drive(settings, state, items, progress, view, options, result.run_id)
            )
        )
        try:
            async with watched() as lag:
                await drive
        except BaseException as exc:
            result.error = _ending(exc, signals.received)
        finally:
            signals.finishing = True
            progress.close()
            result.seconds = time.monotonic() - started
            result.max_loop_lag_ms = lag.worst_ms
            log.debug(
                "the event loop stalled %.1f ms at most",
                lag.worst_ms,
                extra={"event": "loop_lag", "max_loop_lag_ms": lag.worst_ms},
            )
            await state.settled()
            await finish(settings, state, result, described, signals.received)
    return result


def _ending(exc: BaseException, signals: list[Interrupted]) -> RunError:
    """The run-level error a stopped run ends with: the signal that stopped it, else the first
    run-level error among what the workers raised, else a bug (exit 70). Anything that is not
    an Exception (KeyboardInterrupt, a cancellation from outside) goes on up."""
    if signals:
        return signals[0]
    leaves = list(_leaves(exc))
    for leaf in leaves:
        if isinstance(leaf, RunError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, Exception):
            log.debug(
                "traceback of the internal error",
                exc_info=leaf,
                extra={"event": "internal_error"},
            )
            return InternalError.of(leaf)
    raise exc


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def warn_other_sharding(out_dir: Path, shard: Shard | None) -> None:
    """Shards of one N share a folder without overlap; a run split another way (or not at
    all) has its own state, so it does not know what those archived and downloads it again."""
    ways = shard[1] if shard else 1
    others = [s for s in states_in(out_dir) if (s[1] if s else 1) != ways]
    if others:
        names = ", ".join(shard_label(s) or "the unsharded state" for s in others[:4])
        more = f" and {len(others) - 4} more" if len(others) > 4 else ""
        log.warning(
            "this archive also holds runs split another way (%s%s): this run does not see "
            "what they archived and downloads such calls again",
            names,
            more,
            extra={"event": "other_sharding"},
        )


def _remove_stale_parts(state: State, out_dir: Path) -> None:
    """`.part` files a killed run left behind: never resumed blindly, removed."""
    for relative in state.take_stale_parts():
        (out_dir / relative).unlink(missing_ok=True)
    state.commit()


def _from_state(state: State, view: RunView, *, retry_failed: bool) -> Iterator[InputItem]:
    """The calls a run takes from the state first (decide.taken_first), in the total."""
    first = taken_first(state, "run", retry_failed=retry_failed)
    if first:
        view.add_total(len(first))
    return iter(first)


async def _drive(
    settings: Settings,
    state: State,
    items: Iterator[InputItem] | SourceFactory,
    progress: Progress,
    view: RunView,
    options: RunOptions,
    run_id: str,
) -> None:
    policy = CallPolicy(
        out_dir=settings.out_dir,
        layout=settings.layout,
        file_mode=settings.file_mode,
        max_attempts=settings.max_attempts,
        pending_window=settings.pending_window,
        with_metadata=settings.with_metadata,
        with_transcript=settings.with_transcript,
        shard=options.shard,
    )
    _remove_stale_parts(state, settings.out_dir)
    remove_stale_temps_of(settings, options.shard)
    given: _Counted | None = None
    if options.retry_failed:
        items = _from_state(state, view, retry_failed=True)
    elif not callable(items):  # §5.4: pending calls are tried again first, every run
        given = _Counted(items)
        items = _then(_from_state(state, view, retry_failed=False), given)
    timeouts = (settings.connect_timeout, settings.read_timeout)
    proxies = Proxies.from_environment()  # a bad proxy variable: exit 2 before any session
    async with (
        open_api(settings, options, limit=settings.concurrency) as api,
        download_session(
            *timeouts,
            limit=settings.concurrency,
            resolver=guarded_resolver(
                options.resolver, settings.base_url, allow=settings.allow_insecure_urls
            ),
            ssl_context=options.ssl_context,
        ) as download_http,
        _manifest_every(MANIFEST_INTERVAL, settings, state),
    ):
        downloader = Downloader(
            download_http,
            download_policy(settings),
            options.clock,
            monotonic=options.monotonic,
            hosts=Hosts(options.monotonic, options.sleep, max_outage=settings.max_outage),
            proxies=proxies,
        )
        in_flight = InFlight(settings.concurrency, options.monotonic)
        archiver = CallArchiver(
            policy,
            api,
            downloader,
            run_id=run_id,
            clock=options.clock,
            sleep=options.sleep,
            on_part=_part_noter(state),
            on_late=_late_noter(state, view),
            on_throttled=in_flight.throttled,
            downloads=view.downloads,
        )
        pipeline = Pipeline(
            state,
            archiver,
            run_id=run_id,
            out_dir=settings.out_dir,
            concurrency=settings.concurrency,
            force=options.force,
            view=view,
            shard=options.shard,
            in_flight=in_flight,
        )
        source = items(state, api, view) if callable(items) else BlockInput(items)
        progress.start(view)
        await pipeline.run(source)
    if given is not None and given.count == 0:
        log.warning(
            "the input held no call ids, so there was nothing to archive (an empty file, or "
            "stdin from /dev/null under cron?)",
            extra={"event": "empty_input"},
        )


def _then(first: Iterator[InputItem], rest: Iterator[InputItem]) -> Iterator[InputItem]:
    """`first`, then `rest`: a generator, so that closing it closes the input too."""
    yield from first
    yield from rest


class _Counted(Iterator[InputItem]):
    """The input as given, counting its rows as they are read (in the input's thread)."""

    def __init__(self, items: Iterator[InputItem]) -> None:
        self._items = items
        self.count = 0

    def __next__(self) -> InputItem:
        item = next(self._items)
        self.count += 1
        return item

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


def _part_noter(state: State) -> Callable[[str, str], Awaitable[None]]:
    """Register a `.part` durably before it is created (a group commit, shared)."""

    async def note(call_id: str, relative_part: str) -> None:
        state.add_part(call_id, relative_part)
        await state.durable()

    return note


def _late_noter(state: State, view: RunView) -> Callable[[CallRecord], None]:
    """Record and count a call whose file was put in place as the run was being cancelled
    (the run's last commit keeps it)."""

    def note(record: CallRecord) -> None:
        state.record(record)
        view.counts.add(record.status or "archived", record.call_id, record.bytes)

    return note


@contextlib.asynccontextmanager
async def _manifest_every(interval: float, settings: Settings, state: State) -> AsyncIterator[None]:
    """Bring the manifest up to date every `interval` seconds while the run goes (§7), in a
    worker thread from a snapshot of the state (never on the event loop). When the run ends,
    a write under way stops at its next part (what is left, the run's last write does)."""
    stop = threading.Event()

    async def write() -> None:
        await asyncio.to_thread(
            write_manifest, state, settings.out_dir, settings.file_mode, stop.is_set
        )

    writing: list[asyncio.Future[None]] = []

    async def loop() -> None:
        while not stop.is_set():
            await asyncio.sleep(interval)
            writing[:] = [asyncio.ensure_future(write())]
            await asyncio.shield(writing[0])

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for future in writing:  # a write the cancellation left running: it stops soon
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await future


def download_policy(settings: Settings) -> DownloadPolicy:
    return DownloadPolicy(
        file_mode=settings.file_mode,
        rules=UrlRules.for_api(settings.base_url, settings.allow_insecure_urls),
        max_size=settings.max_recording_size,
        min_speed=settings.min_speed,
        min_speed_time=settings.min_speed_time,
        answer_timeout=settings.connect_timeout + settings.read_timeout,
    )


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings, options: RunOptions | None = None, *, limit: int = 4
) -> AsyncIterator[OsviApi]:
    """The API client with its own session (the token goes on no other), rate cap and gate,
    and the API's Reachability: an API that cannot be reached ends the run (exit 69)."""
    options = options or RunOptions()
    token = require_token(settings)
    proxies = Proxies.from_environment()  # before the session: a bad variable is exit 2
    timeouts = (settings.connect_timeout, settings.read_timeout)
    async with api_session(
        *timeouts, limit=limit, resolver=options.resolver, ssl_context=options.ssl_context
    ) as http:
        yield OsviApi(
            http,
            settings.base_url,
            token,
            limiter=RateLimiter(settings.max_requests_per_second, options.monotonic, options.sleep),
            gate=ThrottleGate(options.monotonic, options.sleep),
            clock=options.clock,
            reach=Reachability(
                f"the OSVI API at {settings.base_url}",
                options.monotonic,
                options.sleep,
                max_outage=settings.max_outage,
                essential=True,
            ),
            proxies=proxies,
            timeout=settings.api_timeout,
        )
