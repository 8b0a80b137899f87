"""Shared fixtures: the fake OSVI service on loopback, and the aioresponses shim."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import aioresponses.core
import pytest
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientResponse
from aiohttp.streams import StreamReader

from archiver.fake import FakeConfig, FakeOSVI


class _NoWriter:
    """Stands in for the request's stream writer; a mocked request sends nothing."""

    output_size = 0


class _ShimmedResponse(ClientResponse):
    """aioresponses 0.7.9 on aiohttp 3.14: supply the `stream_writer` argument it omits.

    aiohttp 3.14 made `stream_writer` a required keyword of `ClientResponse.__init__` and
    aioresponses does not pass it (upstream issue #289), so every mocked request fails.
    Delete this shim once an aioresponses release passes it itself.
    """

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(method, url, **kwargs)


def _large_stream_reader(loop: asyncio.AbstractEventLoop | None = None) -> StreamReader:
    """aioresponses feeds the whole body into a 64 KiB-limit reader with no parser behind it,
    and aiohttp's `pause_reading` then asserts on bodies over 128 KiB: use a large limit."""
    protocol = ResponseHandler(loop=loop)  # type: ignore[arg-type]
    return StreamReader(protocol, limit=2**30, loop=loop)


aioresponses.core.ClientResponse = _ShimmedResponse  # type: ignore[attr-defined]
aioresponses.core.stream_reader_factory = _large_stream_reader  # type: ignore[attr-defined]


FakeFactory = Callable[..., Awaitable[FakeOSVI]]


@pytest.fixture
async def make_fake() -> AsyncIterator[FakeFactory]:
    """Start fake services with any config; all are stopped when the test ends."""
    started: list[FakeOSVI] = []

    async def factory(config: FakeConfig | None = None, **kwargs: Any) -> FakeOSVI:
        fake = FakeOSVI(config or FakeConfig(), **kwargs)
        await fake.start()
        started.append(fake)
        return fake

    yield factory
    for fake in started:
        await fake.stop()


@pytest.fixture
async def fake(make_fake: FakeFactory) -> FakeOSVI:
    """A healthy fake service with the default 50 calls."""
    return await make_fake()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session with no credentials, for talking to the fake directly."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def _no_log_context_across_tests() -> Iterator[None]:
    """A command run in-process (cli.main) leaves its log context (logs.set_context) for the
    process: cleared after each test, as each CLI invocation starts without one."""
    yield
    from archiver.monitoring.logs import set_context

    set_context(command=None, run_id=None, shard=None)
