"""One `run`: lock the archive, open the state and both sessions, drive the pipeline, and
whatever happens, leave a manifest and a run report that tell the truth about it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archiver import __version__, metrics
from archiver.api import OsviApi, api_session
from archiver.archive import CallArchiver, CallPolicy
from archiver.download import Downloader, download_session
from archiver.errors import ArchiverError, Interrupted, LocalError
from archiver.inputs import CallId, InputItem
from archiver.limits import InFlight, RateLimiter, ThrottleGate
from archiver.manifest import prune_run_reports, write_manifest, write_run_report
from archiver.pipeline import Pipeline, SharedInput, Source
from archiver.progress import Progress, RunView
from archiver.settings import Settings, require_token
from archiver.state import (
    ArchiveLock,
    Shard,
    State,
    shard_label,
    shard_suffix,
    states_in,
    utc_now,
)
from archiver.storage import ensure_folder
from archiver.summary import Counts, exit_code

log = logging.getLogger("archiver.run")
# What `sync` passes instead of input: builds its listing source once the state and API exist
# (and tells the view the listing's total).
SourceFactory = Callable[[State, OsviApi, RunView], Source]
MANIFEST_INTERVAL = 60.0
RETRIED_FIRST = ("pending",)  # what every run takes from the state before its input (§5.4)
RETRY_FAILED = ("failed", "pending")  # what --retry-failed takes, instead of an input
LAST_SUCCESS_KEY = "last_success_at"  # state meta: epoch seconds of the last run that exited 0


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


@dataclass
class RunResult:
    run_id: str
    counts: Counts
    seconds: float
    error: ArchiverError | None = None
    manifest: Path | None = None
    report: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return exit_code(self.counts, self.error)


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
    """Run the archive job; run-level errors (and signals) end up in the result, not raised."""
    require_token(settings)  # before anything else: a missing token is a usage error
    out_dir = settings.out_dir
    ensure_folder(out_dir)
    lock = ArchiveLock(out_dir, options.shard)
    lock.acquire()
    started, started_at = time.monotonic(), utc_now()
    result = RunResult(new_run_id(options.clock()), Counts(), 0.0)
    log.info(
        "run %s started: archive %s%s",
        result.run_id,
        out_dir,
        f", shard {shard_label(options.shard)}" if options.shard else "",
        extra={
            "event": "run_started",
            "run_id": result.run_id,
            "out_dir": str(out_dir),
            "shard": shard_label(options.shard) or None,
            "concurrency": settings.concurrency,
        },
    )
    try:
        warn_other_sharding(out_dir, options.shard)
        with State(out_dir, shard=options.shard) as state:
            _remove_stale_parts(state, out_dir)
            view = RunView(result.counts, total=options.total)
            if options.retry_failed:
                items = _from_state(state, RETRY_FAILED, "<retry-failed>", view)
            elif not callable(items):  # §5.4: pending calls are tried again first, every run
                pending = _from_state(state, RETRIED_FIRST, "<pending>", view)
                items = itertools.chain(pending, items)
            drive = asyncio.create_task(
                _drive(settings, state, items, progress, view, options, result.run_id)
            )
            with _stop_on_signals(drive) as stopped_by:
                try:
                    await drive
                except* ArchiverError as group:
                    result.error = group.exceptions[0]  # type: ignore[assignment]
                except* asyncio.CancelledError:
                    if not stopped_by:
                        raise
                    result.error = stopped_by[0]
                finally:
                    progress.close()
                    result.seconds = time.monotonic() - started
                    _write_outputs(settings, state, result, started_at)
                    _write_metrics(settings, state, result, options)
            return result
    finally:
        lock.release()


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


def _from_state(
    state: State, statuses: tuple[str, ...], source: str, view: RunView
) -> Iterator[InputItem]:
    """The calls the archive lists with these statuses, read before the run changes them."""
    ids = list(state.ids_with_status(statuses))
    if ids:
        view.add_total(len(ids))
    return (CallId(call_id, source, number) for number, call_id in enumerate(ids, 1))


@contextlib.contextmanager
def _stop_on_signals(drive: asyncio.Task[None]) -> Iterator[list[Interrupted]]:
    """First SIGINT/SIGTERM: cancel the run (in-flight downloads drop their .part files, then
    the manifest and report are written). A second one: exit at once."""
    loop = asyncio.get_running_loop()
    stopped_by: list[Interrupted] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stopped_by:
            print(f"osvi-archiver: {name} again, exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        stopped_by.append(Interrupted(signum, name))
        log.warning(
            "%s: stopping; in-flight downloads are cancelled (again to exit at once)",
            name,
            extra={"event": "signal", "signal": name},
        )
        drive.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not main thread
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        yield stopped_by
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


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
        allow_insecure_urls=settings.allow_insecure_urls,
        with_metadata=settings.with_metadata,
        with_transcript=settings.with_transcript,
        part_tag=shard_suffix(options.shard),
    )
    timeouts = (settings.connect_timeout, settings.read_timeout)
    async with (
        open_api(settings, options, limit=settings.concurrency) as api,
        download_session(*timeouts, limit=settings.concurrency) as download_http,
        _manifest_every(MANIFEST_INTERVAL, settings, state),
    ):
        downloader = Downloader(download_http, settings.file_mode, options.clock)
        in_flight = InFlight(settings.concurrency, options.monotonic)
        archiver = CallArchiver(
            policy,
            api,
            downloader,
            run_id=run_id,
            clock=options.clock,
            sleep=options.sleep,
            on_part=_part_noter(state),
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
        source = items(state, api, view) if callable(items) else SharedInput(items)
        progress.start(view)
        await pipeline.run(source)


def _part_noter(state: State) -> Callable[[str, str], Awaitable[None]]:
    """Register a `.part` durably before it is created (a group commit, shared)."""

    async def note(call_id: str, relative_part: str) -> None:
        state.add_part(call_id, relative_part)
        await state.durable()

    return note


@contextlib.asynccontextmanager
async def _manifest_every(interval: float, settings: Settings, state: State) -> AsyncIterator[None]:
    """Rewrite manifest.json every `interval` seconds while the run goes (§7)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            state.commit()
            write_manifest(state, settings.out_dir, settings.file_mode)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _write_metrics(
    settings: Settings, state: State, result: RunResult, options: RunOptions
) -> None:
    """The Prometheus textfile, when asked for, after the run's outcome is final. The last
    success is kept in the state, so that a failed run still reports when one last worked."""
    finished = options.clock()
    try:
        if settings.metrics_file is not None:
            _metrics_file(settings.metrics_file, state, result, options, finished)
        if result.exit_code == 0:  # only once the metrics say so too
            state.set_meta(LAST_SUCCESS_KEY, repr(finished))
    except LocalError as exc:
        log.error(
            "could not write the metrics file: %s", exc, extra={"event": "metrics_not_written"}
        )
        result.error = result.error or exc


def _metrics_file(
    path: Path, state: State, result: RunResult, options: RunOptions, finished: float
) -> None:
    last = repr(finished) if result.exit_code == 0 else state.get_meta(LAST_SUCCESS_KEY)
    metrics.write(
        path,
        metrics.RunMetrics(
            command=options.command,
            counts=result.counts,
            seconds=result.seconds,
            exit_code=result.exit_code,
            finished_at=finished,
            last_success_at=float(last) if last else None,
            shard=options.shard,
        ),
    )


def _write_outputs(settings: Settings, state: State, result: RunResult, started_at: str) -> None:
    """The manifest and the run report, even after a run-level error. When they cannot be
    written (the disk is full), the state still holds the truth and the next run rewrites
    them; the run then ends with that local error unless it already had one."""
    try:
        _write_manifest_and_report(settings, state, result, started_at)
    except LocalError as exc:
        log.error(
            "could not write the manifest or run report: %s",
            exc,
            extra={"event": "outputs_not_written"},
        )
        result.error = result.error or exc


def _write_manifest_and_report(
    settings: Settings, state: State, result: RunResult, started_at: str
) -> None:
    state.commit()
    result.manifest = write_manifest(state, settings.out_dir, settings.file_mode)
    summary = {
        "run_id": result.run_id,
        "tool": "osvi-archiver",
        "tool_version": __version__,
        "started_at": started_at,
        "finished_at": utc_now(),
        "seconds": round(result.seconds, 3),
        "exit_code": result.exit_code,
        "error": str(result.error) if result.error else None,
        "interrupted": isinstance(result.error, Interrupted),
        "settings": settings.redacted(),
        "shard": shard_label(state.shard) or None,
        "counts": result.counts.to_json(),
    }
    result.report = write_run_report(
        state, settings.out_dir, result.run_id, summary, settings.file_mode
    )
    prune_run_reports(settings.out_dir, settings.keep_run_reports, state.shard)


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings, options: RunOptions | None = None, *, limit: int = 4
) -> AsyncIterator[OsviApi]:
    """The API client with its own session (the token goes on no other), rate cap and gate."""
    options = options or RunOptions()
    token = require_token(settings)
    async with api_session(settings.connect_timeout, settings.read_timeout, limit=limit) as http:
        yield OsviApi(
            http,
            settings.base_url,
            token,
            limiter=RateLimiter(settings.max_requests_per_second, options.monotonic, options.sleep),
            gate=ThrottleGate(options.monotonic, options.sleep),
            clock=options.clock,
        )
