"""Runs the fake's two faces on loopback: in-process (async or in a thread) or in the foreground.

The API face and the recording host listen on different ports, so they are different origins,
as api.osvi.ai and S3 are: a client that sends the token to the recording host gets caught.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from archiver.fake.account import FakeAccount
from archiver.fake.api_app import build_api_app
from archiver.fake.calls import FakeCall
from archiver.fake.config import FakeConfig
from archiver.fake.recording_app import build_recording_app
from archiver.fake.stats import FakeStats


class FakeOSVI:
    """`async with FakeOSVI(FakeConfig(calls=20)) as fake:` then point a client at `base_url`."""

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        api_port: int = 0,
        recording_port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        url_host: str | None = None,
    ) -> None:
        self.config = config or FakeConfig()
        self.account = FakeAccount(self.config, clock)
        self.host = host
        # TLS on both faces (tests of certificate checks), and the name URLs give the host
        # (a certificate's name, such as `localhost`, rather than the address listened on).
        self._ssl = ssl_context
        self._url_host = url_host or host
        self._ports = (api_port, recording_port)
        self._signing_key = secrets.token_bytes(32)
        self._runners: list[web.AppRunner] = []
        self.base_url = ""
        self.recording_origin = ""

    @property
    def token(self) -> str:
        return self.config.token

    @property
    def stats(self) -> FakeStats:
        return self.account.stats

    @property
    def calls(self) -> list[FakeCall]:
        """All calls, newest first."""
        return self.account.calls

    def add_calls(
        self, count: int, created_at: datetime | None = None, picked_at: datetime | None = None
    ) -> list[FakeCall]:
        return self.account.add_calls(count, created_at, picked_at)

    async def start(self) -> None:
        rec_app = build_recording_app(self.account, self._signing_key)
        api_app = build_api_app(self.account, lambda: self.recording_origin, self._signing_key)
        self.recording_origin = await self._serve(rec_app, self._ports[1])
        self.base_url = await self._serve(api_app, self._ports[0])

    async def _serve(self, app: web.Application, port: int) -> str:
        # aiohttp waits `shutdown_timeout` twice for a busy handler (to finish, then to cancel),
        # so a stalled download holds up stop() for double this.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port, ssl_context=self._ssl)
        await site.start()
        bound = runner.addresses[0][1]
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self._url_host}:{bound}"

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@contextmanager
def fake_in_thread(
    config: FakeConfig | None = None,
    *,
    clock: Callable[[], float] = time.time,
    api_port: int = 0,
    recording_port: int = 0,
) -> Iterator[FakeOSVI]:
    """The fake on its own event loop in a thread, for synchronous callers (CLI tests, bench).

    Read its stats only after the client is done: counters are not locked.
    """
    fake = FakeOSVI(config, clock=clock, api_port=api_port, recording_port=recording_port)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    thread = threading.Thread(target=_serve_forever, args=(loop, fake, ready), daemon=True)
    thread.start()
    if not ready.wait(10):
        loop.call_soon_threadsafe(loop.stop)
        raise RuntimeError("the fake OSVI service did not start within 10 s")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _serve_forever(loop: asyncio.AbstractEventLoop, fake: FakeOSVI, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.run_until_complete(fake.start())
    ready.set()
    loop.run_forever()
