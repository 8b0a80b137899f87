"""One `run`: lock the archive, open the state and both sessions, drive the pipeline, and
whatever happens, leave a manifest, a run report and metrics that tell the truth about it
(engine/outputs.py); signals stop it cleanly (engine/signals.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archiver.archive.names import part_inside
from archiver.archive.shard import Shard, shard_label, shard_text
from archiver.config.settings import Settings, require_token
from archiver.config.units import duration_text
from archiver.destinations import open_destination, warn_other_sharding
from archiver.destinations.base import SNAPSHOT_INTERVAL, Destination, Holding
from archiver.engine.assembly import (
    Opened,
    RunOptions,
    build_pipeline,
    open_api,
    open_downloads,
)
from archiver.engine.loop_lag import watched
from archiver.engine.outputs import (
    STOPPING_BUDGET,
    Described,
    RunResult,
    finish,
    remove_stale_temps_of,
)
from archiver.engine.pipeline import SourceFactory
from archiver.engine.signals import Signals, stop_on_signals
from archiver.errors import InternalError, Interrupted, LocalError, RunError, Unavailable
from archiver.manifest.writer import write_manifest
from archiver.monitoring.counts import Counts, Progress, RunView
from archiver.monitoring.logs import set_context
from archiver.net.http import Proxies
from archiver.osvi.reconcile import WindowReport
from archiver.osvi.times import naive_times
from archiver.state.call_records import utc_now
from archiver.state.database import State

log = logging.getLogger("archiver.engine.lifecycle")
MANIFEST_INTERVAL = 60.0


def new_run_id(now: float) -> str:
    """Sortable by start time (to the millisecond), unique by its random tail."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
    return f"{stamp}Z-{secrets.token_hex(3)}"


async def execute(
    settings: Settings,
    source: SourceFactory,
    progress: Progress,
    options: RunOptions,
) -> RunResult:
    """Run the archive job. Errors before the archive is locked and its state open are raised
    (nothing was done: no report); from then on every ending, signals and bugs included, is in
    the result, and the manifest, report and metrics written say its exit code."""
    require_token(settings)  # before anything else: a missing token is a usage error
    destination = open_destination(settings)
    if destination.is_new():
        await _token_accepted(settings, options)
    destination.prepare()
    lock = destination.holding(options.shard)
    lock.acquire()
    try:
        # From here signals and --max-duration stop the run cleanly, the state's restore or
        # rebuild included (issue 21: a SIGTERM then killed it, leaving the lease for 60 s).
        with stop_on_signals() as signals:
            if settings.max_duration is not None:
                signals.deadline(settings.max_duration, duration_text(settings.max_duration))
            held = Held(destination, lock, signals)
            async with lock.kept():  # a store's lease, renewed from now on; a lost one: exit 75
                warn_other_sharding(destination, options.shard)
                await _bring_state(held, options.shard)
                with State(destination.root, shard=options.shard) as state:
                    return await _run(Job(settings, source, progress, options), state, held)
    finally:
        lock.release()


async def _token_accepted(settings: Settings, options: RunOptions) -> None:
    """One listing item, asked once before a new archive is created: a token the API refuses
    (401) ends the run with exit 3 and nothing written; so does any other run-level answer
    that no retry would change (a proxy refusing our login: asking again could lock the
    account; a certificate refused; a host name that does not exist). An API that does not
    answer, a 5xx, a 403 on the listing: not waited for nor retried here, the run goes on and
    meets it in its own way (an outage waited for, then exit 69 with its report)."""
    once = settings.model_copy(update={"max_outage": 1e-6, "max_attempts": 1})
    try:
        async with open_api(once, options.clocks, options.wiring) as api:
            await api.list_page({"page": "1", "per_page": "1"})
    except Unavailable as exc:
        if not exc.outage:
            raise
        _unchecked(exc)
    except RunError:
        raise
    except Exception as exc:
        _unchecked(exc)


def _unchecked(exc: BaseException) -> None:
    log.debug("the token could not be checked first: %s", exc, extra={"event": "token_check"})


@dataclass(frozen=True)
class Job:
    """What a run is asked to do: the settings, where its calls come from, who watches it
    go, and what the command chose."""

    settings: Settings
    source: SourceFactory
    progress: Progress
    options: RunOptions


@dataclass(frozen=True)
class Held:
    """What a run holds while it goes: its destination, its lock, the signals that stop it."""

    destination: Destination
    lock: Holding
    signals: Signals


async def _bring_state(held: Held, shard: Shard | None) -> None:
    """The state made the latest (a store's restore or rebuild), stopped like the run by a
    signal, --max-duration or a lost lease: the run then ends before its state is ready,
    with that exit code, no report and no metrics (there is no state to write them from),
    the lease released. A rebuild goes on from where it stopped next time."""
    task = held.signals.stops(asyncio.create_task(held.destination.bring_state(shard)))

    def stop_bringing() -> None:  # another run holds the archive now: stop at once
        task.cancel()

    held.lock.on_lost(stop_bringing)
    try:
        await task
    except asyncio.CancelledError:
        if held.signals.received:
            raise held.signals.received[0] from None
        if (lost := held.lock.lost()) is not None:
            raise lost from None
        raise
    if (lost := held.lock.lost()) is not None:
        raise lost


async def _run(job: Job, state: State, held: Held) -> RunResult:
    settings, progress, options = job.settings, job.progress, job.options
    destination, lock, signals = held.destination, held.lock, held.signals
    started, started_at = time.monotonic(), utc_now()
    naive_times.reset()  # a time without an offset is said once per run
    result = RunResult(new_run_id(options.clocks.wall()), Counts(), 0.0)
    set_context(run_id=result.run_id, shard=shard_text(options.shard) or None)
    log.info(
        "run %s started: archive %s%s",
        result.run_id,
        settings.archive,
        f", shard {shard_label(options.shard)}" if options.shard else "",
        extra={
            "event": "run_started",
            "run_id": result.run_id,
            "out_dir": str(settings.archive),
            "shard": shard_text(options.shard) or None,
            "concurrency": settings.concurrency,
        },
    )
    view = RunView(result.counts, total=options.total)
    described = Described(
        started_at,
        options.command,
        destination,
        options.shard,
        options.clocks.wall,
        lambda: signals.stopping_for(STOPPING_BUDGET),
        fenced=lambda: lock.lost() is not None,
    )
    drive = signals.stops(asyncio.create_task(_drive(job, state, view, result.run_id, destination)))

    def stop_driving() -> None:  # another run holds the archive now: stop at once
        drive.cancel()

    lock.on_lost(stop_driving)
    try:
        async with watched() as lag:
            await drive
    except BaseException as exc:
        result.error = lock.lost() or _ending(exc, signals.received)
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
        result.listing = _concluded(view)
        await finish(settings, state, result, described, signals.received)
    return result


def _concluded(view: RunView) -> WindowReport | None:
    """sync's check of its own window, from the state as committed; None for `run`, or when
    the state cannot be read (the run's outcome stands, and says why)."""
    if view.listing is None:
        return None
    try:
        return view.listing()
    except LocalError as exc:
        log.error("could not check the sync's window: %s", exc, extra={"event": "state_error"})
        return None


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


def _remove_stale_parts(state: State, out_dir: Path) -> None:
    """`.part` files a killed run left behind: never resumed blindly, removed. Only names a
    run gives a `.part` (relative, inside the folder, ending `.part`): a state restored from a
    store's snapshot is input like any other, and must not name a file to delete elsewhere."""
    for relative in state.take_stale_parts():
        path = part_inside(out_dir, relative)
        if path is None:
            log.warning("ignored a .part entry that is not one: %r", relative,
                        extra={"event": "bad_part_entry"})  # fmt: skip
            continue
        path.unlink(missing_ok=True)
    state.commit()


async def _drive(
    job: Job, state: State, view: RunView, run_id: str, destination: Destination
) -> None:
    settings, options = job.settings, job.options
    _remove_stale_parts(state, destination.root)
    remove_stale_temps_of(settings, destination.root, options.shard)
    Proxies.from_environment()  # a bad proxy variable: exit 2 before any session
    clocks, wiring = options.clocks, options.wiring
    async with (
        open_api(settings, clocks, wiring, limit=settings.concurrency) as api,
        open_downloads(settings, clocks, wiring) as downloader,
        _manifest_every(MANIFEST_INTERVAL, settings, state, destination),
    ):
        opened = Opened(run_id, state, destination, api, downloader, view)
        pipeline = build_pipeline(settings, options, opened)
        job.progress.start(view)
        await pipeline.run(job.source(state, api, view))


@contextlib.asynccontextmanager
async def _manifest_every(
    interval: float, settings: Settings, state: State, destination: Destination
) -> AsyncIterator[None]:
    """Bring the manifest up to date every `interval` seconds while the run goes (§7), in a
    worker thread from a snapshot of the state (never on the event loop), and a store's
    snapshot of the state every SNAPSHOT_INTERVAL. When the run ends, a write under way stops
    at its next part (what is left, the run's last write does)."""
    stop = threading.Event()
    saved = [time.monotonic()]

    async def write() -> None:
        await asyncio.to_thread(write_manifest, state, destination, settings.file_mode, stop.is_set)
        if time.monotonic() - saved[0] >= SNAPSHOT_INTERVAL and not stop.is_set():
            saved[0] = time.monotonic()
            try:
                await asyncio.to_thread(destination.save_state, state)
            except RunError as exc:  # the run's last snapshot is the one that must succeed
                log.warning("could not save the state's snapshot: %s", exc,
                            extra={"event": "snapshot_failed"})  # fmt: skip

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
