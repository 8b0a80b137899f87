"""The two HTTP clients of a run, built from the settings: the API's (the only one that carries
the token) and the recording host's. Each has its own session; neither sees the other's
headers."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.api import OsviApi, api_session
from archiver.bandwidth import Bandwidth
from archiver.body import DownloadPolicy
from archiver.clocks import Clocks
from archiver.download import Transfer
from archiver.http import Proxies, download_session, guarded_resolver
from archiver.limits import RateLimiter, ThrottleGate
from archiver.reachability import Hosts, Reachability
from archiver.settings import Settings, require_token
from archiver.urls import UrlRules

if TYPE_CHECKING:
    import aiohttp


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
        yield OsviApi(
            http,
            settings.base_url,
            token,
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


class Downloader:
    """Makes a `Transfer` per call, all sharing one credential-free session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: DownloadPolicy,
        clock: Callable[[], float],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        hosts: Hosts | None = None,
        proxies: Proxies | None = None,
        bandwidth: Bandwidth | None = None,
    ) -> None:
        self.bandwidth = bandwidth  # --bwlimit: shared by every transfer, None: no limit
        self._session = session
        self._policy = policy
        self._clock = clock
        self._monotonic = monotonic
        self._hosts = hosts or Hosts(monotonic, asyncio.sleep, max_outage=300.0)
        self._proxies = proxies or Proxies()

    def transfer(
        self, destination: Callable[[str], Awaitable[tuple[Path, Path]]], who: str = ""
    ) -> Transfer:
        """The transfer of call `who` (named to the hosts' Reachability)."""
        return Transfer(self, destination, who)
