"""A fault proxy in front of moto's S3 server, for the bucket destination's tests (issue 21):
per-key refusals, a slowed upload, a reply held back after the store applied the request,
503s, and a record of every request the store saw.

It runs an aiohttp server on loopback in a thread of its own (the tool calls the store both
from the event loop's thread and from worker threads, so the proxy cannot share the test's
loop), and forwards each request as it came (path, query, headers, body) to moto, which checks
no signature. Rules match a request by method and key (the path after the bucket) and fire a
number of times (None: always).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp
from aiohttp import web

Match = Callable[[str, str, str], bool]  # (method, key, query) -> whether the rule applies

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Rule:
    match: Match
    kind: str  # refuse, fail, slow, hold, delay
    times: int | None = 1
    status: int = 400
    code: str = "InvalidRequest"
    message: str = "refused by the fault proxy"
    rate: float = 100_000.0  # bytes a second, for slow
    seconds: float = 0.5  # for delay: before the request goes on

    def fires(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class Seen:
    method: str
    key: str
    query: str
    status: int


@dataclass
class FaultProxy:
    target: str  # moto's endpoint
    bucket: str
    endpoint: str = ""
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def requests(self, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if method is None or s.method == method]

    def _rule(self, method: str, key: str, query: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.match(method, key, query) and rule.fires():
                    return rule
        return None

    def _key(self, path: str) -> str:
        path = unquote(path).lstrip("/")
        bucket, _, key = path.partition("/")
        return key if bucket == self.bucket else path

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key, query = self._key(request.raw_path.split("?", 1)[0]), request.query_string
        rule = self._rule(request.method, key, query)
        if rule is not None and rule.kind in ("refuse", "fail"):
            await request.read()
            return self._note(request, key, _error(rule.status, rule.code, rule.message))
        if rule is not None and rule.kind == "delay":
            await asyncio.sleep(rule.seconds)
        body = await (self._slowly(request, rule.rate) if rule and rule.kind == "slow"
                      else request.read())  # fmt: skip
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
            request.method, self.target + request.raw_path, headers=headers,
            data=io.BytesIO(body) if body else None,
            allow_redirects=False,
        ) as upstream:  # fmt: skip
            payload = await upstream.read()
            status = upstream.status
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            length = upstream.headers.get("Content-Length")
        if rule is not None and rule.kind == "hold":  # applied, but the reply never comes
            self._note(request, key, web.Response(status=status))
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("reply held back by the fault proxy")
        if request.method == "HEAD":  # its Content-Length is the object's, with no body
            head = web.StreamResponse(status=status, headers=out)
            if length is not None:
                head.content_length = int(length)
            self._note(request, key, web.Response(status=status))
            await head.prepare(request)
            await head.write_eof()
            return head
        return self._note(request, key, web.Response(status=status, body=payload, headers=out))

    async def _slowly(self, request: web.Request, rate: float) -> bytes:
        chunks = []
        async for chunk in request.content.iter_chunked(16384):
            chunks.append(chunk)
            await asyncio.sleep(len(chunk) / rate)
        return b"".join(chunks)

    def _note(self, request: web.Request, key: str, response: web.Response) -> web.Response:
        with self._lock:
            self.seen.append(Seen(request.method, key, request.query_string, response.status))
        return response


def _error(status: int, code: str, message: str) -> web.Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>")  # fmt: skip
    headers = {"Content-Type": "application/xml"}
    if status == 503:
        headers["Retry-After"] = "0"
    return web.Response(status=status, text=body, headers=headers)


@contextmanager
def fault_proxy(target: str, bucket: str) -> Iterator[FaultProxy]:
    """The proxy running, its `endpoint` the store's endpoint for the tool."""
    proxy = FaultProxy(target, bucket)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        run = web.AppRunner(app, access_log=None, handle_signals=False)
        await run.setup()
        site = web.TCPSite(run, "127.0.0.1", 0)
        await site.start()
        port = run.addresses[0][1]
        proxy.endpoint = f"http://127.0.0.1:{port}"
        runner.append(run)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def on_key(method: str, needle: str) -> Match:
    """Requests of `method` whose key contains `needle`."""
    return lambda m, key, query: m == method and needle in key
