"""A run's parts built from the settings, in one place: the two HTTP clients (the API's, the
only one that carries the token, and the recording host's: each its own session, neither sees
the other's headers), the policy of one call, the call archiver and the pipeline that drives
them. lifecycle.py owns the run's lifecycle (lock, state, signals, outputs); this module puts
its parts together."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard
from archiver.config.settings import Settings, require_token
from archiver.destinations.base import Destination
from archiver.engine.call import CallArchiver, CallHooks, CallPolicy
from archiver.engine.clocks import Clocks
from archiver.engine.pipeline import Pipeline, PoolPlan
from archiver.monitoring.counts import RunView
from archiver.net.http import Proxies, download_session, guarded_resolver
from archiver.net.reachability import Hosts, Reachability
from archiver.net.urls import UrlRules
from archiver.osvi.api import OsviApi, Pacing, api_session
from archiver.osvi.limits import InFlight, RateLimiter, ThrottleGate
from archiver.state.call_records import CallRecord
from archiver.state.database import State
from archiver.transfer.bandwidth import Bandwidth
from archiver.transfer.body_checks import DownloadPolicy
from archiver.transfer.download import Downloader


@dataclass(frozen=True)
class Wiring:
    """Test hooks of both sessions: an aiohttp resolver (names without DNS), a TLS context."""

    resolver: Any = None
    ssl_context: ssl.SSLContext | None = None


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings,
    clocks: Clocks | None = None,
    wiring: Wiring | None = None,
    *,
    limit: int = 4,
) -> AsyncIterator[OsviApi]:
    """The API client with its own session (the token goes on no other), rate cap and gate,
    and the API's Reachability: an API that cannot be reached ends the run (exit 69)."""
    clocks, wiring = clocks or Clocks(), wiring or Wiring()
    token = require_token(settings)
    proxies = Proxies.from_environment()  # before the session: a bad variable is exit 2
    timeouts = (settings.connect_timeout, settings.read_timeout)
    async with api_session(
        *timeouts, limit=limit, resolver=wiring.resolver, ssl_context=wiring.ssl_context
    ) as http:
        pacing = Pacing(
            limiter=RateLimiter(settings.max_requests_per_second, clocks.monotonic, clocks.sleep),
            gate=ThrottleGate(clocks.monotonic, clocks.sleep),
            clock=clocks.wall,
            reach=Reachability(
                f"the OSVI API at {settings.base_url}",
                clocks.monotonic,
                clocks.sleep,
                max_outage=settings.max_outage,
                essential=True,
            ),
            proxies=proxies,
            timeout=settings.api_timeout,
        )
        yield OsviApi(http, settings.base_url, token, pacing, settings.token_source)


@contextlib.asynccontextmanager
async def open_downloads(
    settings: Settings, clocks: Clocks | None = None, wiring: Wiring | None = None
) -> AsyncIterator[Downloader]:
    """The recording host's client: its own session (no token, no cookies, a resolver that
    refuses this machine's addresses unless the API itself is local or allow_insecure_urls),
    the bounds of every attempt, and the hosts' Reachability."""
    clocks, wiring = clocks or Clocks(), wiring or Wiring()
    proxies = Proxies.from_environment()
    async with download_session(
        settings.connect_timeout,
        settings.read_timeout,
        limit=settings.concurrency,
        resolver=guarded_resolver(
            wiring.resolver, settings.base_url, allow=settings.allow_insecure_urls
        ),
        ssl_context=wiring.ssl_context,
    ) as http:
        yield Downloader(
            http,
            download_policy(settings),
            clocks.wall,
            monotonic=clocks.monotonic,
            hosts=Hosts(clocks.monotonic, clocks.sleep, max_outage=settings.max_outage),
            proxies=proxies,
            bandwidth=(
                Bandwidth(settings.bwlimit, clocks.monotonic, clocks.sleep)
                if settings.bwlimit
                else None
            ),
        )


def download_policy(settings: Settings) -> DownloadPolicy:
    return DownloadPolicy(
        file_mode=settings.file_mode,
        rules=UrlRules.for_api(settings.base_url, settings.allow_insecure_urls),
        max_size=settings.max_recording_size,
        min_speed=settings.min_speed,
        min_speed_time=settings.min_speed_time,
        answer_timeout=settings.connect_timeout + settings.read_timeout,
    )


@dataclass(frozen=True)
class RunOptions:
    """What the command chose for this run beyond the settings, and the clocks and wiring it
    runs on (tests inject them)."""

    force: bool = False
    retry_not_available: bool = False  # --retry-not-available
    shard: Shard | None = None  # --shard K/N: only the ids whose shard is K
    total: int | None = None  # ids in the input, when counted (progress: done of total, ETA)
    command: str = "run"  # run or sync: a label of the metrics
    clocks: Clocks = field(default_factory=Clocks)
    wiring: Wiring = field(default_factory=Wiring)


@dataclass(frozen=True)
class Opened:
    """What a run has opened by the time its pipeline is built."""

    run_id: str
    state: State
    destination: Destination
    api: OsviApi
    downloader: Downloader
    view: RunView


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


def build_pipeline(settings: Settings, options: RunOptions, opened: Opened) -> Pipeline:
    """The call archiver and the pool that drives it, for what the run has opened."""
    state, view, clocks = opened.state, opened.view, options.clocks
    # Workers stay `concurrency`; this window lets fewer of them work while throttled.
    in_flight = InFlight(settings.concurrency, clocks.monotonic)
    hooks = CallHooks(
        on_part=_part_noter(state),
        on_late=_late_noter(state, view),
        on_throttled=in_flight.throttled,
        on_retry=view.counts.retried,
        downloads=view.downloads,
    )
    policy = call_policy(settings, options.shard, opened.destination)
    archiver = CallArchiver(
        policy, opened.api, opened.downloader, run_id=opened.run_id, clocks=clocks, hooks=hooks
    )
    plan = PoolPlan(
        run_id=opened.run_id,
        concurrency=settings.concurrency,
        on_disk=opened.destination.on_disk(),
        force=options.force,
        retry_not_available=options.retry_not_available,
        shard=options.shard,
        in_flight=in_flight,
    )
    return Pipeline(state, archiver, view, plan)


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
