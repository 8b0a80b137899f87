from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from archiver.errors import (
    ApiBadResponse,
    ApiRejected,
    AuthError,
    CallError,
    ConnectionFault,
    NotAvailable,
    ServerError,
    Throttled,
    UrlExpired,
)
from archiver.osvi.api import LARGE_ANSWER, MAX_BODY, OsviApi, Pacing, api_session
from archiver.osvi.limits import RateLimiter, ThrottleGate
from archiver.osvi.responses import (
    MAX_LIFETIME,
    UNKNOWN_LIFETIME_USE,
    JsonAnswer,
    RecordingUrl,
    error_text,
    lifetime_of,
)
from tests.clocks import SteppedClock

BASE = "https://api.osvi.test"
TOKEN = "osvi_live_tok_5f4e3d2c1b0a"
A = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"
RECORDING = f"{BASE}/v1/call/{A}/recording"
CALL = f"{BASE}/v1/call/{A}"
PRESIGNED = "https://bucket.s3.amazonaws.com/rec/a.mp4?X-Amz-Signature=abc"
START = 1_700_000_000.0


@dataclass
class Harness:
    session: aiohttp.ClientSession
    mocked: Any
    clock: SteppedClock
    gate: ThrottleGate
    api: OsviApi

    def with_rate(self, rate: float) -> OsviApi:
        limiter = RateLimiter(rate, self.clock, self.clock.sleep)
        return OsviApi(self.session, BASE, TOKEN, Pacing(limiter, self.gate, self.clock))

    def requests(self) -> list[tuple[URL, dict[str, Any]]]:
        return [
            (url, call.kwargs) for (_, url), calls in self.mocked.requests.items() for call in calls
        ]

    def hosts(self) -> set[str | None]:
        return {url.host for url, _ in self.requests()}


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = SteppedClock(START)
    gate = ThrottleGate(clock, clock.sleep)
    limiter = RateLimiter(1_000_000, clock, clock.sleep)
    async with aiohttp.ClientSession() as session:
        with aioresponses() as mocked:
            api = OsviApi(session, f"{BASE}/", TOKEN, Pacing(limiter, gate, clock))
            yield Harness(session, mocked, clock, gate, api)


def ok(data: object) -> dict[str, object]:
    return {"success": True, "data": data}


def recording(expires: object = 900) -> dict[str, object]:
    return ok({"call_id": A, "recording_url": PRESIGNED, "expires_in_seconds": expires})


# error_text


def test_error_text_reads_the_error_shape_with_details() -> None:
    body = json.dumps({"success": False, "error": "invalid_id", "details": {"id": "x"}})
    assert error_text(body.encode()) == 'invalid_id ({"id": "x"})'


def test_error_text_reads_the_error_shape_without_details() -> None:
    body = json.dumps({"success": False, "error": "recording_not_available"})
    assert error_text(body.encode()) == "recording_not_available"


def test_error_text_reads_the_errors_array_shape() -> None:
    body = json.dumps({"success": False, "errors": ["id is invalid", "limit too large"]})
    assert error_text(body.encode()) == "id is invalid; limit too large"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"  upstream timeout \n", "upstream timeout"),
        (b"", "(empty body)"),
        (b'{"success": false}', '{"success": false}'),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_error_text_falls_back_to_the_raw_body(body: bytes, expected: str) -> None:
    assert error_text(body) == expected


async def test_a_long_error_body_is_cut_short_in_the_message(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=400, body=b"x" * 10_000)
    with pytest.raises(ApiRejected) as caught:
        await harness.api.recording_url(A)
    assert "x" * 299 in str(caught.value)
    assert "x" * 301 not in str(caught.value)


async def test_the_token_is_masked_before_the_text_is_cut(harness: Harness) -> None:
    """Cut first and mask after, and a token straddling the cut would leak its head."""
    for lead in (280, 290, 295, 299):
        harness.mocked.get(RECORDING, status=400, body=b"x" * lead + TOKEN.encode() + b" tail")
        with pytest.raises(ApiRejected) as caught:
            await harness.api.recording_url(A)
        message = str(caught.value)
        assert not any(TOKEN[:n] in message for n in range(4, len(TOKEN) + 1)), lead


async def test_control_characters_of_an_error_body_are_escaped(harness: Harness) -> None:
    body = {"success": False, "error": "bad\x1b[31m red \x1b]0;pwned\x07 \r\n\u202eevil"}
    harness.mocked.get(RECORDING, status=422, payload=body)
    with pytest.raises(ApiRejected) as caught:
        await harness.api.recording_url(A)
    message = str(caught.value)
    assert not any(c in message for c in "\x1b\x07\r\n\u202e")
    assert "\\x1b[31m red" in message


# recording_url


async def test_recording_url_parses_the_data_and_stamps_the_clock(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=recording(900))
    got = await harness.api.recording_url(A)
    assert got == RecordingUrl(A, PRESIGNED, 900.0, START)


async def test_a_900_second_url_is_usable_for_840_seconds(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=recording(900))
    got = await harness.api.recording_url(A)
    assert got.usable_until() == START + 840.0


async def test_a_2_second_url_is_usable_for_1_5_seconds(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=recording(2))
    got = await harness.api.recording_url(A)
    assert got.usable_until() == START + 1.5


@pytest.mark.parametrize(
    ("expires", "usable"), [(120, 90.0), (240, 180.0), (300, 240.0), (3600, 3540.0)]
)
def test_usable_until_margin_is_the_smaller_of_a_minute_and_a_quarter(
    expires: float, usable: float
) -> None:
    assert RecordingUrl(A, PRESIGNED, expires, 10.0).usable_until() == 10.0 + usable


@pytest.mark.parametrize(
    "data",
    [
        {"call_id": A, "expires_in_seconds": 900},
        None,
        ["not", "an", "object"],
        {"call_id": A, "recording_url": None},
        {"call_id": A, "recording_url": 12345},
        {"call_id": A, "recording_url": ["https://x/a.mp4"]},
        {"call_id": A, "recording_url": ""},
    ],
)
async def test_recording_url_with_unexpected_data_is_a_bad_response(
    harness: Harness, data: object
) -> None:
    harness.mocked.get(RECORDING, payload=ok(data))
    with pytest.raises(ApiBadResponse) as caught:
        await harness.api.recording_url(A)
    assert caught.value.kind == "api_bad_response"


# expires_in_seconds: every edge value has its decided meaning


@pytest.mark.parametrize(
    ("value", "lifetime"),
    [
        (900, 900.0),
        ("900", 900.0),
        (2.5, 2.5),
        (None, None),  # missing or null: unknown (the URL's X-Amz-Expires if any, below)
        (float("nan"), None),
        ("NaN", None),
        ("soon", None),
        (True, None),
        ({"s": 1}, None),
        (10**12, MAX_LIFETIME),  # huge: S3's longest, 7 days
        (float("inf"), MAX_LIFETIME),
        ("1e999", MAX_LIFETIME),
    ],
)
def test_lifetime_of_each_edge_value(value: object, lifetime: float | None) -> None:
    assert lifetime_of(value, PRESIGNED) == lifetime


@pytest.mark.parametrize("value", [0, -5, "0", float("-inf"), -1e-9])
def test_a_lifetime_of_zero_or_less_is_an_expired_url(value: object) -> None:
    with pytest.raises(UrlExpired, match="already expired"):
        lifetime_of(value, PRESIGNED)


def test_a_missing_lifetime_is_read_from_the_urls_own_x_amz_expires() -> None:
    url = "https://b.s3.amazonaws.com/a.mp4?X-Amz-Date=20261201T000000Z&X-Amz-Expires=600&x=1"
    assert lifetime_of(None, url) == 600.0
    assert lifetime_of(None, url.replace("600", "abc")) is None


async def test_a_url_of_unknown_lifetime_is_usable_only_at_once(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=ok({"call_id": A, "recording_url": PRESIGNED}))
    got = await harness.api.recording_url(A)
    assert got.expires_in is None
    assert got.usable_until() == START + UNKNOWN_LIFETIME_USE


async def test_a_zero_lifetime_is_not_read_as_900_seconds(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=recording(0))
    with pytest.raises(UrlExpired):
        await harness.api.recording_url(A)


async def test_nan_in_the_json_body_is_an_unknown_lifetime(harness: Harness) -> None:
    body = '{"success": true, "data": {"recording_url": "%s", "expires_in_seconds": NaN}}'
    harness.mocked.get(RECORDING, body=body % PRESIGNED)
    assert (await harness.api.recording_url(A)).expires_in is None


# bodies are capped


async def test_a_body_over_the_cap_is_refused_without_being_held(harness: Harness) -> None:
    harness.mocked.get(RECORDING, body=b"x" * (MAX_BODY + 1))
    with pytest.raises(ApiBadResponse, match="more than"):
        await harness.api.recording_url(A)


async def test_a_deeply_nested_json_body_is_a_bad_response_not_a_crash(harness: Harness) -> None:
    harness.mocked.get(RECORDING, body="[" * 100_000 + "]" * 100_000)
    with pytest.raises(ApiBadResponse):
        await harness.api.recording_url(A)


# the listing's call ids


async def test_listing_items_whose_call_id_is_not_a_uuid_string_are_set_aside(
    harness: Harness,
) -> None:
    upper = A.upper()
    data = [
        {"call_id": upper},
        {"call_id": 12345},
        {"call_id": ["x"]},
        {"call_id": {"a": 1}},
        {"call_id": None},
        {"call_id": "../../etc/passwd"},
        "not an object",
    ]
    body = {"success": True, "data": data, "meta": {"total_count": 7}}
    harness.mocked.get(f"{BASE}/v1/calls", payload=body)
    page = await harness.api.list_page({})
    assert [item["call_id"] for item in page.items] == [A]
    assert len(page.unusable) == 6
    assert "'../../etc/passwd'" in page.unusable


@pytest.mark.parametrize(
    ("total", "expected"),
    [(7, 7), (None, None), ("7", None), (-3, None), (float("nan"), None), (True, None)],
)
async def test_a_listing_total_count_that_is_not_a_count_is_no_hint(
    harness: Harness, total: object, expected: int | None
) -> None:
    body = {"success": True, "data": [{"call_id": A}, {"call_id": A}], "meta": {}}
    if total is not None:
        body["meta"] = {"total_count": total, "total_pages": total, "per_page": total}
    harness.mocked.get(f"{BASE}/v1/calls", body=json.dumps(body))
    page = await harness.api.list_page({})
    assert (page.total_count, page.total_pages, page.per_page) == (expected,) * 3
    assert page.size == 2


@pytest.mark.parametrize("meta", ["null", None, '"text"', "[1]"])
async def test_a_listing_without_a_usable_meta_is_still_a_page(
    harness: Harness, meta: str | None
) -> None:
    """Every field of the listing's meta may be null: the page is read, with no hints."""
    data = json.dumps([{"call_id": A}])
    extra = f', "meta": {meta}' if meta is not None else ""
    harness.mocked.get(f"{BASE}/v1/calls", body=f'{{"success": true, "data": {data}{extra}}}')
    page = await harness.api.list_page({})
    assert [item["call_id"] for item in page.items] == [A]
    assert (page.total_count, page.total_pages) == (None, None)


async def test_recording_url_404_is_not_available(harness: Harness) -> None:
    body = {"success": False, "error": "recording_not_available"}
    harness.mocked.get(RECORDING, status=404, payload=body)
    with pytest.raises(NotAvailable, match="recording_not_available"):
        await harness.api.recording_url(A)


# status mapping


async def test_401_is_an_auth_error_without_the_token(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=401, payload={"success": False, "error": "unauthorized"})
    with pytest.raises(AuthError) as caught:
        await harness.api.recording_url(A)
    assert caught.value.exit_code == 3
    assert "unauthorized" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 422, 500])
async def test_an_error_body_echoing_the_token_does_not_put_it_in_the_message(
    harness: Harness, status: int
) -> None:
    body = {"success": False, "error": f"bad API-Token {TOKEN}", "details": {"token": TOKEN}}
    harness.mocked.get(RECORDING, status=status, payload=body)
    with pytest.raises((CallError, AuthError)) as caught:
        await harness.api.recording_url(A)
    assert TOKEN not in str(caught.value)


async def test_429_with_retry_after_is_throttled_and_pauses_the_gate(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=429, headers={"Retry-After": "7"}, body="slow down")
    with pytest.raises(Throttled) as caught:
        await harness.api.recording_url(A)
    assert caught.value.retry_after == 7.0
    assert harness.gate.paused_until == harness.clock() + 7.0


async def test_429_with_an_http_date_retry_after_is_relative_to_the_clock(
    harness: Harness,
) -> None:
    moment = email.utils.formatdate(START + 30, usegmt=True)
    harness.mocked.get(RECORDING, status=429, headers={"Retry-After": moment})
    with pytest.raises(Throttled) as caught:
        await harness.api.recording_url(A)
    assert caught.value.retry_after == 30.0
    assert harness.gate.paused_until == START + 30.0


async def test_429_without_retry_after_is_throttled_with_a_short_pause(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=429)
    with pytest.raises(Throttled) as caught:
        await harness.api.recording_url(A)
    assert caught.value.retry_after is None
    assert harness.gate.paused_until == START + 1.0


async def test_429_with_a_garbage_retry_after_is_still_throttled(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=429, headers={"Retry-After": "²"})
    with pytest.raises(Throttled) as caught:
        await harness.api.recording_url(A)
    assert caught.value.retry_after is None


async def test_the_pause_after_a_429_holds_the_next_request(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=429, headers={"Retry-After": "5"})
    harness.mocked.get(CALL, payload=ok({"id": A}))
    with pytest.raises(Throttled):
        await harness.api.recording_url(A)
    assert await harness.api.call(A) == {"id": A}
    assert harness.clock() >= START + 5.0
    assert 5.0 in harness.clock.sleeps


async def test_503_with_retry_after_is_throttled_and_pauses_the_gate(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=503, headers={"Retry-After": "12"})
    with pytest.raises(Throttled) as caught:
        await harness.api.recording_url(A)
    assert caught.value.retry_after == 12.0
    assert harness.gate.paused_until == START + 12.0


async def test_503_without_retry_after_is_a_server_error(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=503, body="unavailable")
    with pytest.raises(ServerError):
        await harness.api.recording_url(A)
    assert harness.gate.paused_until == 0.0


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_5xx_is_a_server_error(harness: Harness, status: int) -> None:
    harness.mocked.get(RECORDING, status=status, payload={"success": False, "error": "boom"})
    with pytest.raises(ServerError, match=f"{status}.*boom"):
        await harness.api.recording_url(A)


@pytest.mark.parametrize("status", [400, 403, 409, 422])
async def test_other_4xx_are_rejected_permanently(harness: Harness, status: int) -> None:
    body = {"success": False, "errors": ["call id is invalid"]}
    harness.mocked.get(RECORDING, status=status, payload=body)
    with pytest.raises(ApiRejected, match=f"{status}.*call id is invalid"):
        await harness.api.recording_url(A)


@pytest.mark.parametrize(
    "body",
    [
        "<html>maintenance</html>",
        "",
        '{"success": false, "error": "nope"}',
        '{"success": true}',
        "[1, 2, 3]",
    ],
)
async def test_a_200_that_is_not_a_json_success_envelope_is_a_bad_response(
    harness: Harness, body: str
) -> None:
    harness.mocked.get(RECORDING, status=200, body=body)
    with pytest.raises(ApiBadResponse):
        await harness.api.recording_url(A)


# the token and redirects


async def test_the_token_header_goes_with_each_api_request(harness: Harness) -> None:
    harness.mocked.get(RECORDING, payload=recording())
    harness.mocked.get(CALL, payload=ok({"id": A}))
    await harness.api.recording_url(A)
    await harness.api.call(A)
    requests = harness.requests()
    assert [str(url) for url, _ in requests] == [RECORDING, CALL]
    for _, kwargs in requests:
        assert kwargs["headers"] == {"API-Token": TOKEN}
        assert kwargs["allow_redirects"] is False


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/steal",
        "//evil.example/steal",
        "https://api.osvi.test:8443/v1/call/x",
        "http://api.osvi.test/v1/call/x",
    ],
)
async def test_a_redirect_to_another_origin_is_not_followed(
    harness: Harness, location: str
) -> None:
    target = str(URL(RECORDING).join(URL(location)))
    harness.mocked.get(RECORDING, status=302, headers={"Location": location})
    harness.mocked.get(target, payload=recording())
    with pytest.raises(ApiRejected, match="another origin"):
        await harness.api.recording_url(A)
    assert [str(url) for url, _ in harness.requests()] == [RECORDING]


async def test_the_token_never_reaches_a_cross_origin_redirect_target(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=307, headers={"Location": "https://evil.example/x"})
    harness.mocked.get("https://evil.example/x", payload=recording())
    with pytest.raises(ApiRejected) as caught:
        await harness.api.recording_url(A)
    assert harness.hosts() == {"api.osvi.test"}
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_same_origin_redirect_is_followed_with_the_token(
    harness: Harness, status: int
) -> None:
    moved = f"{BASE}/v2/call/{A}/recording"
    harness.mocked.get(RECORDING, status=status, headers={"Location": f"/v2/call/{A}/recording"})
    harness.mocked.get(moved, payload=recording(600))
    got = await harness.api.recording_url(A)
    assert got.expires_in == 600.0
    requests = harness.requests()
    assert [str(url) for url, _ in requests] == [RECORDING, moved]
    assert requests[1][1]["headers"] == {"API-Token": TOKEN}


async def test_a_redirect_loop_within_the_origin_is_cut_short(harness: Harness) -> None:
    harness.mocked.get(RECORDING, status=302, headers={"Location": RECORDING}, repeat=True)
    with pytest.raises(ApiRejected, match="too many redirects"):
        await harness.api.recording_url(A)
    assert len(harness.requests()) == 4


# transport failures


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("Connection refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        TimeoutError(),
        aiohttp.SocketTimeoutError(),
    ],
)
async def test_connection_failures_are_connection_faults(
    harness: Harness, exc: BaseException
) -> None:
    harness.mocked.get(RECORDING, exception=exc)
    with pytest.raises(ConnectionFault) as caught:
        await harness.api.recording_url(A)
    assert caught.value.__cause__ is exc
    assert TOKEN not in str(caught.value)


async def test_an_invalid_url_is_rejected_not_retried(harness: Harness) -> None:
    harness.mocked.get(RECORDING, exception=aiohttp.InvalidURL(RECORDING))
    with pytest.raises(ApiRejected):
        await harness.api.recording_url(A)


# call


async def test_call_returns_the_data_object(harness: Harness) -> None:
    data = {"id": A, "created_at": "2026-11-05T10:00:00+05:30", "agent_uuid": None}
    harness.mocked.get(CALL, payload=ok(data))
    assert await harness.api.call(A) == data


async def test_call_returns_none_on_404(harness: Harness) -> None:
    harness.mocked.get(CALL, status=404, payload={"success": False, "error": "not_found"})
    assert await harness.api.call(A) is None


async def test_call_whose_data_is_not_an_object_is_a_bad_response(harness: Harness) -> None:
    harness.mocked.get(CALL, payload=ok([A]))
    with pytest.raises(ApiBadResponse, match="not an object"):
        await harness.api.call(A)


# large answers: parsed one at a time


async def test_a_detail_is_kept_as_it_came_and_parsed_when_asked(harness: Harness) -> None:
    harness.mocked.get(CALL, payload=ok({"id": A}))
    answer = await harness.api.detail(A)
    assert answer is not None
    assert json.loads(answer.body) == ok({"id": A})
    assert answer.data() == {"id": A}


async def test_a_large_answer_is_parsed_only_while_no_other_large_one_is(
    harness: Harness,
) -> None:
    """Sixteen calls each holding 8 MiB of small objects parsed took GBs: one at a time."""
    big = [JsonAnswer(b" " * (LARGE_ANSWER + 1) + b"{}", "call") for _ in range(3)]
    small = JsonAnswer(b"{}", "call")
    inside: list[str] = []
    most = 0
    release = asyncio.Event()

    async def hold(answer: JsonAnswer, name: str) -> None:
        nonlocal most
        async with harness.api.parsing(answer):
            inside.append(name)
            most = max(most, sum(1 for n in inside if n.startswith("big")))
            await release.wait()
            inside.remove(name)

    tasks = [asyncio.create_task(hold(a, f"big{n}")) for n, a in enumerate(big)]
    tasks.append(asyncio.create_task(hold(small, "small")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(inside) == ["big0", "small"]  # a small one goes through at once
    release.set()
    await asyncio.gather(*tasks)
    assert most == 1
    assert inside == []


# rate cap, repr, session


async def test_every_request_goes_through_the_rate_limiter(harness: Harness) -> None:
    api = harness.with_rate(2)
    harness.mocked.get(CALL, payload=ok({"id": A}), repeat=True)
    for _ in range(3):
        await api.call(A)
    assert harness.clock() == START + 1.0


def test_repr_does_not_show_the_token() -> None:
    clock = SteppedClock(START)
    pacing = Pacing(RateLimiter(1, clock, clock.sleep), ThrottleGate(clock, clock.sleep), clock)
    api = OsviApi(None, BASE, TOKEN, pacing)  # type: ignore[arg-type]
    assert TOKEN not in repr(api)
    assert TOKEN not in str(api)
    assert BASE in repr(api)


async def test_api_session_carries_no_credentials_or_cookies() -> None:
    session = api_session(connect_timeout=3, read_timeout=7, limit=4)
    try:
        assert "API-Token" not in session.headers
        assert isinstance(session.cookie_jar, aiohttp.DummyCookieJar)
        assert session.timeout.total is None
        assert session.timeout.sock_connect == 3
        assert session.timeout.sock_read == 7
        assert session.connector is not None
        assert session.connector.limit == 4
    finally:
        await session.close()
