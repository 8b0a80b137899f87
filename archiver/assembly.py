"""A run's parts built from the settings, in one place: the policy of one call, the
downloader, the call archiver and the pipeline that drives them. run.py owns the lifecycle
(lock, state, signals, outputs), connect.py the two clients; this module puts them
together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from archiver.api import OsviApi
from archiver.archive import CallArchiver, CallPolicy
from archiver.clocks import Clocks
from archiver.connect import Downloader
from archiver.counts import RunView
from archiver.destination import Destination
from archiver.limits import InFlight
from archiver.pipeline import Pipeline
from archiver.records import CallRecord
from archiver.settings import Settings
from archiver.shard import Shard
from archiver.state import State
from archiver.status import Status


@dataclass(frozen=True)
class Choices:
    """What the user chose for this run beyond the settings."""

    force: bool = False
    shard: Shard | None = None


def call_policy(settings: Settings, shard: Shard | None, destination: Destination) -> CallPolicy:
    return CallPolicy(
        destination=destination,
        layout=settings.layout,
        file_mode=settings.file_mode,
        max_attempts=settings.max_attempts,
        pending_window=settings.pending_window,
        with_metadata=settings.with_metadata,
        with_transcript=settings.with_transcript,
        shard=shard,
    )


def build_pipeline(
    settings: Settings,
    state: State,
    api: OsviApi,
    downloader: Downloader,
    *,
    destination: Destination,
    view: RunView,
    choices: Choices,
    clocks: Clocks,
    run_id: str,
) -> Pipeline:
    # Workers stay `concurrency`; this window lets fewer of them work while throttled.
    in_flight = InFlight(settings.concurrency, clocks.monotonic)
    archiver = CallArchiver(
        call_policy(settings, choices.shard, destination),
        api,
        downloader,
        run_id=run_id,
        clock=clocks.wall,
        sleep=clocks.sleep,
        on_part=_part_noter(state),
        on_late=_late_noter(state, view),
        on_throttled=in_flight.throttled,
        on_retry=view.counts.retried,
        downloads=view.downloads,
    )
    return Pipeline(
        state,
        archiver,
        run_id=run_id,
        on_disk=destination.on_disk(),
        concurrency=settings.concurrency,
        force=choices.force,
        view=view,
        shard=choices.shard,
        in_flight=in_flight,
    )


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
        status = record.status or Status.ARCHIVED
        view.counts.add(status, record.call_id, record.bytes, record.error_kind)

    return note
