"""The fake's API face: the four documented endpoints with their documented bodies and faults."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from archiver.fake.account import FakeAccount
from archiver.fake.calls import IST, STATUSES, FakeCall, agent_uuids
from archiver.fake.config import OMIT, FaultKind
from archiver.fake.signing import presign
from archiver.fake.stats import DETAIL, LIST, RECORDING_URL, TRANSCRIPT

ACCOUNT: web.AppKey[FakeAccount] = web.AppKey("account", FakeAccount)
RECORDING_ORIGIN: web.AppKey[Callable[[], str]] = web.AppKey("recording_origin")
SIGNING_KEY: web.AppKey[bytes] = web.AppKey("signing_key", bytes)
MAX_PER_PAGE = 100
_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListQueryError(ValueError):
    """A listing parameter the real API would refuse with 422."""


def _error(status: int, code: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"success": False, "error": code, "details": None}, status=status, headers=headers
    )


def _errors(
    status: int, messages: list[str], *, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"success": False, "errors": messages}, status=status, headers=headers)


def _endpoint_of(request: web.Request) -> tuple[str, str | None]:
    """(endpoint name, call id or None) for counters and per-call faults."""
    name = request.match_info.route.name or "unknown"
    return name, request.match_info.get("call_id")


@web.middleware
async def _face(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, the token check, injected 5xx/429, and counting, around every API request."""
    account = request.app[ACCOUNT]
    if request.path.startswith("/_fake/"):
        return await handler(request)
    endpoint, call_id = _endpoint_of(request)
    if account.config.api_latency:
        await asyncio.sleep(account.config.api_latency)
    refusal = _refusal(request, account, call_id) or await _hostile(request, account, call_id)
    response = refusal if refusal is not None else await handler(request)
    account.stats.record(endpoint, response.status, _known(account, call_id))
    return response


async def _hostile(
    request: web.Request, account: FakeAccount, call_id: str | None
) -> web.StreamResponse | None:
    """A broken or hostile API: an error body echoing the token (with ANSI escapes meant for
    a terminal), or a JSON answer of `huge_body` bytes, streamed."""
    subject = call_id or f"list:{request.query_string}"
    if account.fires(FaultKind.API_ECHO, subject):
        token = request.headers.get("API-Token", "")
        text = f"\x1b[31mbad request\x1b[0m for token {token} \x1b]0;pwned\x07 (token={token})"
        return _error(400, text)
    if account.fires(FaultKind.API_HUGE, subject):
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"success": true, "data": {"padding": "')
        chunk = b"x" * (1 << 20)
        with contextlib.suppress(ConnectionError):
            for _ in range(account.config.huge_body >> 20):
                await response.write(chunk)
            await response.write(b'"}}')
        return response
    return None


def _known(account: FakeAccount, call_id: str | None) -> str | None:
    call = account.get(call_id) if call_id else None
    return call.call_id if call else None


def _refusal(
    request: web.Request, account: FakeAccount, call_id: str | None
) -> web.Response | None:
    if request.headers.get("API-Token") != account.config.token:
        # The documented ErrorUnauthorized body has no `details`, unlike the other errors.
        return web.json_response({"success": False, "error": "Invalid API token"}, status=401)
    if account.over_rate():
        account.stats.faults_fired["rate-limit"] += 1
        return _errors(429, ["Rate limit exceeded"], headers={"Retry-After": "1"})
    subject = call_id or f"list:{request.query_string}"
    retry = {"Retry-After": account.config.retry_after}
    if account.fires(FaultKind.API_429, subject):
        return _errors(429, ["Too many requests, slow down"], headers=retry)
    if account.fires(FaultKind.API_503, subject):
        return _error(503, "service_unavailable", headers=retry)
    if account.fires(FaultKind.API_500, subject):
        return _error(500, "internal_server_error")
    return None


async def _recording(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    call = account.get(request.match_info["call_id"])
    if call is None or not account.recording_available(call):
        return _error(404, "recording_not_available")
    path = f"/recordings/{call.call_id}.mp4"
    lifetime = account.config.url_lifetime
    origin = request.app[RECORDING_ORIGIN]()
    url = presign(request.app[SIGNING_KEY], origin, path, account.clock(), lifetime)
    override = account.config.recording_urls.get(call.call_id)
    if override is not None:
        url = override.replace("{signed}", url).replace("{origin}", origin)
    data: dict[str, object] = {"call_id": call.call_id, "recording_url": url}
    expires = account.config.expires_in.get(call.call_id, lifetime)
    if expires != OMIT:
        data["expires_in_seconds"] = expires
    return web.json_response({"success": True, "data": data})


async def _detail(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    call = account.get(request.match_info["call_id"])
    if call is None:
        return _error(404, "call_not_found")
    envelope = {"success": True, "data": _shown(account, call, call.detail())}
    size = account.config.detail_padding
    if not size:
        return web.json_response(envelope)
    # The detail's last field, spliced in as bytes made once: `}}` closes data and envelope.
    head = json.dumps(envelope).encode()[:-2]
    body = head + b', "padding": ' + _padding(size) + b"}}"
    return web.Response(body=body, content_type="application/json")


@functools.lru_cache(maxsize=4)
def _padding(size: int) -> bytes:
    """A JSON list of turns, `size` bytes or a little more."""
    turn = {"role": "agent", "text": "Thank you for calling, how can I help?", "start": 12.5}
    one = json.dumps(turn, separators=(",", ":")).encode()
    count = max(1, -(-(size - 1) // (len(one) + 1)))
    return b"[" + b",".join([one] * count) + b"]"


async def _transcript(request: web.Request) -> web.Response:
    call = request.app[ACCOUNT].get(request.match_info["call_id"])
    if call is None:
        return _error(404, "call_not_found")
    data = {"call_id": call.call_id, "transcript": call.transcript()}
    return web.json_response({"success": True, "data": data})


async def _list(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT]
    try:
        keep, page, per_page = _parse_list_query(request.query)
    except ListQueryError as exc:
        return _errors(422, [str(exc)])
    agent = request.query.get("agent_uuid")
    if agent is not None and agent not in agent_uuids(account.config.seed):
        return _error(404, "agent_not_found")
    low, high = _bounds(request.query)
    matching = [call for call in account.picked_between(low, high) if keep(call)]
    config = account.config
    shown = 1 if config.list_ignore_page else page
    if shown > 1 and account.repeats_page():
        shown -= 1
    start = (shown - 1) * per_page
    data = [_listed(account, call) for call in matching[start : start + per_page]]
    body: dict[str, Any] = {"success": True, "data": data}
    if config.list_meta != "absent":
        body["meta"] = _meta(config.list_meta, page, per_page, len(matching), len(data))
    return web.json_response(body)


def _meta(mode: str, page: int, per_page: int, count: int, shown: int) -> dict[str, int] | None:
    """The listing's `meta`, honest or lying the way `list_meta` says."""
    if mode == "null":
        return None
    if mode == "page-count":
        count = shown
    elif mode == "inflated":
        count = 1000 * (count + 1)
    return {
        "current_page": page,
        "total_pages": math.ceil(count / per_page),
        "total_count": count,
        "per_page": per_page,
    }


def _shown(account: FakeAccount, call: FakeCall, fields: dict[str, Any]) -> dict[str, Any]:
    """The call's fields with those the null_fields knob hides set to null, and its times as
    the naive_dates and time_shift knobs show them."""
    config = account.config
    hidden = config.null_fields.get(call.call_id, frozenset())
    shown = {k: (None if k in hidden else v) for k, v in fields.items()}
    if config.naive_dates or config.time_shift:
        for name in ("created_at", "call_picked_at"):
            value = shown.get(name)
            if isinstance(value, str):
                moment = datetime.fromisoformat(value) + timedelta(seconds=config.time_shift)
                text = moment.isoformat(timespec="seconds")
                shown[name] = text[:19] if config.naive_dates else text
    return shown


def _listed(account: FakeAccount, call: FakeCall) -> dict[str, Any]:
    item = _shown(account, call, call.list_item())
    if call.call_id in account.config.listed_ids:
        item["call_id"] = account.config.listed_ids[call.call_id]
    return item


def _int_param(query: Any, name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ListQueryError(f"{name} must be an integer") from None


def _parse_list_query(query: Any) -> tuple[Callable[[FakeCall], bool], int, int]:
    """Validate the listing's query: a predicate over calls, the page and the page size."""
    page = _int_param(query, "page", 1) or 0
    per_page = _int_param(query, "per_page", 25) or 0
    if page < 1 or per_page < 1:
        raise ListQueryError("page and per_page must be positive integers")
    checks: list[Callable[[FakeCall], bool]] = []
    if "status" in query:
        statuses = {s.strip() for s in query["status"].split(",")}
        if not statuses <= set(STATUSES):
            raise ListQueryError(f"status must be among {', '.join(STATUSES)}")
        checks.append(lambda c: c.status in statuses)
    if "call_type" in query:
        if query["call_type"] not in ("inbound", "outbound"):
            raise ListQueryError("call_type must be inbound or outbound")
        checks.append(lambda c: c.call_type == query["call_type"])
    if "agent_uuid" in query:
        checks.append(lambda c: c.agent_uuid == query["agent_uuid"])
    campaign = _int_param(query, "campaign_id", None)
    if campaign is not None:
        checks.append(lambda c: c.campaign_id == campaign)
    upload = _int_param(query, "campaign_upload_id", None)
    if upload is not None:
        checks.append(lambda c: c.campaign_upload_id == upload)
    if "phone_number" in query:
        checks.append(lambda c: query["phone_number"] in c.phone_number)
    checks.extend(_date_checks(query))
    return (lambda call: all(check(call) for check in checks)), page, min(per_page, MAX_PER_PAGE)


def _date_checks(query: Any) -> list[Callable[[FakeCall], bool]]:
    """Inclusive bounds on call_picked_at. Bare dates are IST days; a bare end_date is the
    whole day (the real API leaves this undocumented; clients should send timestamps)."""
    checks: list[Callable[[FakeCall], bool]] = []
    if "start_date" in query:
        low = _parse_when(query["start_date"], "start_date", end_of_day=False)
        checks.append(lambda c: c.call_picked_at is not None and c.call_picked_at >= low)
    if "end_date" in query:
        high = _parse_when(query["end_date"], "end_date", end_of_day=True)
        checks.append(lambda c: c.call_picked_at is not None and c.call_picked_at <= high)
    return checks


def _bounds(query: Any) -> tuple[datetime | None, datetime | None]:
    """The listing's date bounds (already validated), for the account's index."""
    low = (
        _parse_when(query["start_date"], "start_date", end_of_day=False)
        if "start_date" in query
        else None
    )
    high = (
        _parse_when(query["end_date"], "end_date", end_of_day=True) if "end_date" in query else None
    )
    return low, high


def _parse_when(text: str, name: str, *, end_of_day: bool) -> datetime:
    try:
        if _BARE_DATE.match(text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), IST)
            return day + timedelta(days=1, microseconds=-1) if end_of_day else day
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ListQueryError(f"{name} must be a date or an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise ListQueryError(f"{name} must carry a UTC offset")
    return moment


async def _add_calls(request: web.Request) -> web.Response:
    """Test hook, no token needed: `POST /_fake/calls?count=N` adds N calls that just ended."""
    try:
        count = int(request.query.get("count", "1"))
    except ValueError:
        return _errors(422, ["count must be an integer"])
    added = request.app[ACCOUNT].add_calls(count)
    return web.json_response({"added": [call.call_id for call in added]})


async def _stats(request: web.Request) -> web.Response:
    """Test hook, no token needed: the fake's counters as JSON."""
    body = json.dumps(request.app[ACCOUNT].stats.to_json())
    return web.Response(text=body, content_type="application/json")


def build_api_app(
    account: FakeAccount, recording_origin: Callable[[], str], signing_key: bytes
) -> web.Application:
    app = web.Application(middlewares=[_face])
    app[ACCOUNT] = account
    app[RECORDING_ORIGIN] = recording_origin
    app[SIGNING_KEY] = signing_key
    app.router.add_get("/v1/call/{call_id}/recording", _recording, name=RECORDING_URL)
    app.router.add_get("/v1/call/{call_id}/transcript", _transcript, name=TRANSCRIPT)
    app.router.add_get("/v1/call/{call_id}", _detail, name=DETAIL)
    app.router.add_get("/v1/calls", _list, name=LIST)
    app.router.add_get("/_fake/stats", _stats, name="stats")
    app.router.add_post("/_fake/calls", _add_calls, name="add_calls")
    return app
