"""What a broken or hostile network looks like, on loopback only: names that resolve without
DNS (or do not), TLS with a test CA, a port that accepts and never answers, a TCP relay that
can be taken down and brought back, and a proxy that asks for credentials."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp.abc import AbstractResolver, ResolveResult

from archiver.config.settings import Settings, load_settings
from archiver.engine.assembly import RunOptions
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import read_ids
from archiver.engine.lifecycle import execute
from archiver.engine.outputs import RunResult
from archiver.monitoring.counts import NoProgress


class NamesResolver(AbstractResolver):
    """Resolves the names given to 127.0.0.1 and fails every other name as DNS would, with
    no look-up at all."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names and host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]  # fmt: skip

    async def close(self) -> None:
        pass


@dataclass
class Tls:
    ca: trustme.CA
    server: ssl.SSLContext
    client: ssl.SSLContext  # trusts the test CA
    ca_file: Path


def tls_for(tmp_path: Path, *names: str) -> Tls:
    """A test CA and a server certificate for `names`; the client context trusts the CA."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(ca, server, client, ca_file)


@contextlib.asynccontextmanager
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Relay:
    """A TCP relay to `target` on loopback that can be taken down: while down, every
    connection (new or open) is reset at once, before any answer, as a dead link does."""

    target: int
    port: int = 0
    is_down: bool = False
    _server: asyncio.Server | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()

    def down(self) -> None:
        self.is_down = True
        for writer in list(self._open):
            writer.transport.abort()

    def up(self) -> None:
        self.is_down = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(1 << 16):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            self._open.difference_update((writer, up_writer))


@contextlib.asynccontextmanager
async def proxy_asking_credentials() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP proxy that answers 407 to every request; yields its port and what it got."""
    seen: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()


def settings_at(base_url: str, out: Path, token: str, **flags: Any) -> Settings:
    return load_settings(
        {"base_url": base_url, "out_dir": out, "max_requests_per_second": 1000, **flags},
        config_path=None,
        environ={"OSVI_API_TOKEN": token},
    )


async def run_ids(
    settings: Settings, ids: Iterable[str], options: RunOptions | None = None
) -> RunResult:
    """`osvi-archiver run` in-process over `ids` as a CSV input."""
    text = "call_id\n" + "".join(f"{i}\n" for i in ids)
    items = read_ids(io.BytesIO(text.encode()), "<test>")
    return await execute(settings, run_input(items), NoProgress(), options or RunOptions())
