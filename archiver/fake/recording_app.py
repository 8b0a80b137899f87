"""The fake's recording host: S3-like presigned GETs with Range, ETag, expiry and body faults."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import socket
import struct
import time

from aiohttp import hdrs, web

from archiver.fake.account import FakeAccount
from archiver.fake.calls import FakeCall
from archiver.fake.config import FaultKind
from archiver.fake.signing import UrlCheck, check, presign
from archiver.fake.stats import DOWNLOAD, Leak

ACCOUNT: web.AppKey[FakeAccount] = web.AppKey("account", FakeAccount)
SIGNING_KEY: web.AppKey[bytes] = web.AppKey("signing_key", bytes)
_UNTYPED: web.ResponseKey[bool] = web.ResponseKey("untyped", bool)
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_CHUNK = 256 * 1024
_CREDENTIAL_HEADERS = ("API-Token", "Authorization")
_NOT_AUDIO = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"


def _s3_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>FAKE{time.monotonic_ns():X}</RequestId></Error>"
    )
    return web.Response(
        status=status, text=body, content_type="application/xml", headers=headers or None
    )


def _refusal(request: web.Request, account: FakeAccount) -> web.Response | None:
    """Credentials, then the signature and expiry, as S3 checks a presigned GET."""
    for name in _CREDENTIAL_HEADERS:
        if name in request.headers:
            account.stats.leaks.append(Leak(path=request.path, header=name))
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
    verdict = check(request.app[SIGNING_KEY], request.path, dict(request.query), account.clock())
    if verdict is UrlCheck.EXPIRED:
        account.stats.expired_uses += 1
        return _s3_error(403, "AccessDenied", "Request has expired")
    if verdict is UrlCheck.BAD_SIGNATURE:
        account.stats.bad_signatures += 1
        return _s3_error(
            403,
            "AccessDenied",
            "The request signature we calculated does not match the signature you provided.",
        )
    return None


def _injected(account: FakeAccount, call: FakeCall) -> web.Response | None:
    retry = account.config.retry_after
    if account.fires(FaultKind.REC_503, call.call_id):
        return _s3_error(
            503, "SlowDown", "Please reduce your request rate.", **{"Retry-After": retry}
        )
    if account.fires(FaultKind.REC_500, call.call_id):
        return _s3_error(500, "InternalError", "We encountered an internal error.")
    if account.fires(FaultKind.NOT_AUDIO, call.call_id):
        return web.Response(status=200, body=_NOT_AUDIO, content_type="text/html")
    return None


async def _download(request: web.Request) -> web.StreamResponse:
    account = request.app[ACCOUNT]
    call = account.get(request.match_info["call_id"])
    refusal = _refusal(request, account)
    if refusal is None and call is None:
        refusal = _s3_error(404, "NoSuchKey", "The specified key does not exist.")
    if refusal is not None:
        account.stats.record(DOWNLOAD, refusal.status, call.call_id if call else None)
        return refusal
    assert call is not None  # refused above otherwise
    if account.config.download_latency:
        await asyncio.sleep(account.config.download_latency)
    injected = _injected(account, call) or _redirect(request, account, call)
    if injected is not None:
        account.stats.record(DOWNLOAD, injected.status, call.call_id)
        return injected
    if account.fires(FaultKind.ENDLESS, call.call_id):
        return await _endless(request, account, call)
    if account.fires(FaultKind.GZIP, call.call_id) and "gzip" in request.headers.get(
        hdrs.ACCEPT_ENCODING, ""
    ):
        return await _gzipped(request, account, call)
    return await _stream(request, account, call)


def _redirect(request: web.Request, account: FakeAccount, call: FakeCall) -> web.Response | None:
    """The redirects knob: 302 to its Location, where `{signed}` is a fresh signed URL of
    this call that is then served (it carries `hop=1`), `{again}` one that redirects again."""
    location = account.config.redirects.get(call.call_id)
    if location is None or "hop" in request.query:
        return None
    signed = presign(
        request.app[SIGNING_KEY],
        f"{request.scheme}://{request.host}",
        request.path,
        account.clock(),
        account.config.url_lifetime,
    )
    location = location.replace("{signed}", f"{signed}&hop=1").replace("{again}", signed)
    return web.Response(status=302, headers={"Location": location})


async def _endless(
    request: web.Request, account: FakeAccount, call: FakeCall
) -> web.StreamResponse:
    """200 with audio bytes, no Content-Length and no end: until the client gives up."""
    response = web.StreamResponse(status=200)
    response.content_type = "audio/mp4"
    response.enable_chunked_encoding()
    account.stats.record(DOWNLOAD, 200, call.call_id)
    await response.prepare(request)
    body = account.body(call)
    block = body.read(0, min(body.size, _CHUNK))
    stats = account.stats.call(call.call_id)
    with contextlib.suppress(ConnectionError):
        while True:
            await response.write(block)
            stats.bytes_sent += len(block)
            await asyncio.sleep(0)
    return response  # pragma: no cover (the loop ends with the connection)


async def _gzipped(request: web.Request, account: FakeAccount, call: FakeCall) -> web.Response:
    """The body gzip-encoded, as a host does for a client that says it accepts gzip."""
    data = account.body(call).read(0, call.size)
    encoded = await asyncio.to_thread(gzip.compress, data)
    account.stats.record(DOWNLOAD, 200, call.call_id)
    return web.Response(
        status=200,
        body=encoded,
        content_type="audio/mp4",
        headers={hdrs.CONTENT_ENCODING: "gzip"},
    )


def _requested_range(
    request: web.Request, account: FakeAccount, size: int
) -> tuple[int, int] | None:
    """[start, end) asked for by `Range: bytes=N-[M]`, or None for the whole body."""
    match = _RANGE.match(request.headers.get("Range", ""))
    if match is None or account.config.ignore_range:
        return None
    start = int(match.group(1))
    end = int(match.group(2)) + 1 if match.group(2) else size
    return start, min(end, size)


async def _stream(request: web.Request, account: FakeAccount, call: FakeCall) -> web.StreamResponse:
    size = call.size
    wanted = _requested_range(request, account, size)
    start, end = wanted or (0, size)
    if start >= size or start >= end:
        account.stats.record(DOWNLOAD, 416, call.call_id)
        return _s3_error(
            416,
            "InvalidRange",
            "The requested range is not satisfiable",
            **{"Content-Range": f"bytes */{size}"},
        )
    response = web.StreamResponse(status=206 if wanted else 200)
    if account.config.content_type:
        response.content_type = account.config.content_type
    else:
        response[_UNTYPED] = True
    response.content_length = end - start
    # Hashing a large body takes seconds: off the loop, so other streams and stalls go on.
    etag = await asyncio.to_thread(account.md5, call)
    response.headers["ETag"] = f'"{etag}-2"' if account.config.multipart_etag else f'"{etag}"'
    response.headers["Accept-Ranges"] = "bytes"
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    account.stats.record(DOWNLOAD, response.status, call.call_id)
    await response.prepare(request)
    fault = _body_fault(account, call)
    with contextlib.suppress(ConnectionError):
        await _send(request, response, account, call, start, end, fault)
    return response


def _body_fault(account: FakeAccount, call: FakeCall) -> FaultKind | None:
    for kind in (FaultKind.RESET, FaultKind.CUT, FaultKind.STALL, FaultKind.TRICKLE):
        if account.fires(kind, call.call_id):
            return kind
    return None


async def _send(
    request: web.Request,
    response: web.StreamResponse,
    account: FakeAccount,
    call: FakeCall,
    start: int,
    end: int,
    fault: FaultKind | None,
) -> None:
    """Write [start, end), paced to the bandwidth knob, breaking halfway if a fault fired."""
    body = account.body(call)
    stats = account.stats.call(call.call_id)
    trickle = fault is FaultKind.TRICKLE  # the whole body, slowly: no break halfway
    bandwidth = account.config.trickle_rate if trickle else account.config.bandwidth
    smallest = 1 if trickle else 4096
    chunk = _CHUNK if bandwidth is None else max(smallest, min(_CHUNK, int(bandwidth / 20)))
    halfway = end if trickle else start + (end - start) // 2
    began = time.monotonic()
    sent = 0
    position = start
    while position < end:
        stop = min(end, position + chunk, halfway if fault and position < halfway else end)
        data = body.read(position, stop - position)
        await response.write(data)
        position += len(data)
        sent += len(data)
        stats.bytes_sent += len(data)
        if fault and not trickle and position == halfway:
            if await _break(request, fault, account.config.stall_seconds):
                return
            fault = None
        if bandwidth:
            ahead = sent / bandwidth - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
    await response.write_eof()
    stats.downloads_complete += 1


async def _break(request: web.Request, fault: FaultKind, stall_seconds: float) -> bool:
    """Carry out a body fault; True when the connection is gone."""
    transport = request.transport
    if fault is FaultKind.STALL:
        await asyncio.sleep(stall_seconds)
        return transport is None or transport.is_closing()
    if transport is None:
        return True
    if fault is FaultKind.RESET:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends RST, like a peer dropping the connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()  # FIN after what was written: a body shorter than Content-Length
    return True


async def _drop_default_content_type(_: web.Request, response: web.StreamResponse) -> None:
    """aiohttp labels a body that has no Content-Type `application/octet-stream` while preparing
    it; the no-content-type knob means no header at all, so take that label off again."""
    if response.get(_UNTYPED):
        response.headers.popall(hdrs.CONTENT_TYPE, None)


def build_recording_app(account: FakeAccount, signing_key: bytes) -> web.Application:
    app = web.Application()
    app.on_response_prepare.append(_drop_default_content_type)
    app[ACCOUNT] = account
    app[SIGNING_KEY] = signing_key
    app.router.add_get("/recordings/{call_id}.mp4", _download, name=DOWNLOAD)
    return app
