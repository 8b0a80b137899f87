"""Every fault and pacing knob of the fake, seen from a plain client over loopback."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from archiver.fake import FakeCall, FakeConfig, FakeOSVI, Fault, FaultKind
from tests.conftest import FakeFactory
from tests.fake.fake_client import (
    Answer,
    api_get,
    full_body,
    get,
    recorded_calls,
    recording_url,
)

HTTP_DATE = "Wed, 21 Oct 2026 07:28:00 GMT"
SIZE = 200_000  # every recording in these tests, so "half the body" is a known number


async def _faulty(
    make_fake: FakeFactory, kind: FaultKind, fault: Fault | None = None, **config: object
) -> FakeOSVI:
    """A fake with one fault (every call, once per call, unless `fault` says otherwise)."""
    faults = {kind: fault or Fault(rate=1.0)}
    sizes: dict[str, object] = {"size_min": SIZE, "size_max": SIZE}
    return await make_fake(FakeConfig(faults=faults, **(sizes | config)))  # type: ignore[arg-type]


async def _faulty_url(
    make_fake: FakeFactory,
    http: aiohttp.ClientSession,
    kind: FaultKind,
    fault: Fault | None = None,
    **config: object,
) -> tuple[FakeOSVI, FakeCall, str]:
    """`_faulty`, its first recorded call, and a fresh recording URL for it."""
    fake = await _faulty(make_fake, kind, fault, **config)
    call = recorded_calls(fake)[0]
    return fake, call, await recording_url(http, fake, call.call_id)


async def _download(http: aiohttp.ClientSession, fake: FakeOSVI, call: FakeCall) -> Answer:
    return await get(http, await recording_url(http, fake, call.call_id))


@dataclass(frozen=True)
class Broken:
    """A download that broke before its end: what arrived, and how it broke."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    error: Exception


async def _broken_download(http: aiohttp.ClientSession, url: str, **request: Any) -> Broken:
    received = bytearray()
    status, headers = 0, CIMultiDictProxy(CIMultiDict[str]())
    try:
        async with http.get(url, **request) as response:
            status, headers = response.status, response.headers
            async for chunk in response.content.iter_any():
                received += chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Broken(status, headers, bytes(received), exc)
    raise AssertionError(f"the whole body arrived ({len(received)} bytes)")


# --- API faults ----------------------------------------------------------------------------


async def test_api_500_answers_500_once_per_call_then_succeeds(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_500)
    call = recorded_calls(fake)[0]
    first = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert first.status == 500
    assert first.json() == {"success": False, "error": "internal_server_error", "details": None}
    assert "Retry-After" not in first.headers
    second = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert second.status == 200
    assert second.json()["data"]["call_id"] == call.call_id
    assert fake.stats.faults_fired == {"api-500": 1}
    assert fake.stats.call(call.call_id).statuses == {"recording:500": 1, "recording:200": 1}


def _is_503_body(body: Any) -> bool:
    return bool(body == {"success": False, "error": "service_unavailable", "details": None})


def _is_429_body(body: Any) -> bool:
    errors = body.get("errors")
    return body.get("success") is False and bool(errors) and all(isinstance(e, str) for e in errors)


@pytest.mark.parametrize("retry_after", ["7", HTTP_DATE], ids=["seconds", "http-date"])
@pytest.mark.parametrize(
    ("kind", "path", "status", "shaped"),
    [
        (FaultKind.API_503, "", 503, _is_503_body),  # the `error` shape
        (FaultKind.API_429, "/transcript", 429, _is_429_body),  # the `errors` array shape
    ],
    ids=["503", "429"],
)
async def test_api_503_and_429_answer_with_retry_after_once_per_call(
    make_fake: FakeFactory,
    http: aiohttp.ClientSession,
    retry_after: str,
    kind: FaultKind,
    path: str,
    status: int,
    shaped: Any,
) -> None:
    fake = await _faulty(make_fake, kind, retry_after=retry_after)
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}{path}")
    assert answer.status == status
    assert answer.headers["Retry-After"] == retry_after
    assert shaped(answer.json())
    assert (await api_get(http, fake, f"/v1/call/{call.call_id}{path}")).status == 200
    assert fake.stats.faults_fired == {kind.value: 1}


async def test_default_retry_after_is_one_second(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_429)
    answer = await api_get(http, fake, "/v1/calls")
    assert answer.headers["Retry-After"] == "1"


async def test_api_fault_on_the_listing_fires_once_per_query(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_429)
    assert (await api_get(http, fake, "/v1/calls", {"page": "1"})).status == 429
    assert (await api_get(http, fake, "/v1/calls", {"page": "1"})).status == 200
    assert (await api_get(http, fake, "/v1/calls", {"page": "2"})).status == 429
    assert (await api_get(http, fake, "/v1/calls", {"page": "2"})).status == 200
    assert fake.stats.statuses == {"calls:429": 2, "calls:200": 2}
    assert fake.stats.faults_fired == {"api-429": 2}


async def test_api_faults_come_after_the_token_check(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_500)
    call = recorded_calls(fake)[0]
    path = f"/v1/call/{call.call_id}"
    assert (await api_get(http, fake, path, token="wrong-token-0000")).status == 401
    assert fake.stats.faults_fired == {}
    assert (await api_get(http, fake, path)).status == 500


# --- recording host faults -----------------------------------------------------------------


async def test_rec_500_answers_500_xml_then_the_download_succeeds(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.REC_500)
    first = await get(http, url)
    assert first.status == 500
    assert first.headers["Content-Type"].startswith("application/xml")
    assert "<Code>InternalError</Code>" in first.text
    second = await get(http, url)
    assert second.status == 200
    assert second.body == full_body(fake, call)
    assert fake.stats.faults_fired == {"rec-500": 1}


@pytest.mark.parametrize("retry_after", ["3", HTTP_DATE], ids=["seconds", "http-date"])
async def test_rec_503_answers_503_slowdown_with_retry_after(
    make_fake: FakeFactory, http: aiohttp.ClientSession, retry_after: str
) -> None:
    fake, _call, url = await _faulty_url(
        make_fake, http, FaultKind.REC_503, retry_after=retry_after
    )
    first = await get(http, url)
    assert first.status == 503
    assert first.headers["Retry-After"] == retry_after
    assert "<Code>SlowDown</Code>" in first.text
    assert (await get(http, url)).status == 200
    assert fake.stats.faults_fired == {"rec-503": 1}


async def test_reset_breaks_the_connection_before_the_end_of_the_body(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.RESET)
    broken = await _broken_download(http, url)
    assert isinstance(
        broken.error,
        aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError | aiohttp.ClientOSError,
    )
    assert broken.status == 200
    assert len(broken.body) <= SIZE // 2
    assert fake.stats.faults_fired == {"reset": 1}
    assert fake.stats.call(call.call_id).downloads_complete == 0
    again = await get(http, url)
    assert again.body == full_body(fake, call)


async def test_cut_sends_less_than_content_length_and_the_client_sees_a_payload_error(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.CUT)
    broken = await _broken_download(http, url)
    assert isinstance(broken.error, aiohttp.ClientPayloadError)
    assert broken.headers["Content-Length"] == str(SIZE)
    assert broken.body == full_body(fake, call)[: SIZE // 2]
    stats = fake.stats.call(call.call_id)
    assert stats.bytes_sent == SIZE // 2
    assert stats.downloads_complete == 0
    assert fake.stats.faults_fired == {"cut": 1}


async def test_cut_on_a_range_request_breaks_halfway_through_the_range(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.CUT)
    broken = await _broken_download(http, url, headers={"Range": "bytes=100000-"})
    assert isinstance(broken.error, aiohttp.ClientPayloadError)
    assert broken.status == 206
    assert broken.body == full_body(fake, call)[100_000:150_000]


async def test_stall_goes_silent_halfway_so_a_sock_read_timeout_fires(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, _call, url = await _faulty_url(make_fake, http, FaultKind.STALL, stall_seconds=0.6)
    began = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=None, sock_read=0.15)
    broken = await _broken_download(http, url, timeout=timeout)
    assert isinstance(broken.error, TimeoutError)
    assert time.monotonic() - began < 0.6
    assert len(broken.body) == SIZE // 2
    assert fake.stats.faults_fired == {"stall": 1}


async def test_stall_resumes_after_stall_seconds_for_a_patient_client(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.STALL, stall_seconds=0.3)
    call = recorded_calls(fake)[0]
    began = time.monotonic()
    answer = await _download(http, fake, call)
    assert time.monotonic() - began >= 0.29
    assert answer.body == full_body(fake, call)
    assert fake.stats.call(call.call_id).downloads_complete == 1


async def test_not_audio_answers_200_text_html_then_the_recording(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.NOT_AUDIO)
    first = await get(http, url)
    assert first.status == 200
    assert first.headers["Content-Type"].startswith("text/html")
    assert first.body.startswith(b"<!DOCTYPE html>")
    assert len(first.body) < 1000
    second = await get(http, url)
    assert second.headers["Content-Type"] == "audio/mp4"
    assert second.body == full_body(fake, call)
    assert fake.stats.faults_fired == {"not-audio": 1}


async def test_not_available_answers_404_for_an_answered_call_every_time(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.NOT_AVAILABLE)
    call = recorded_calls(fake)[0]
    for _ in range(3):
        answer = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
        assert answer.status == 404
        assert answer.json()["error"] == "recording_not_available"
    assert (await api_get(http, fake, f"/v1/call/{call.call_id}")).status == 200
    assert fake.stats.faults_fired == {"not-available": 3}


@pytest.mark.parametrize("asks", [1, 2, 4])
async def test_pending_answers_404_for_the_first_asks_then_200(
    make_fake: FakeFactory, http: aiohttp.ClientSession, asks: int
) -> None:
    fake = await _faulty(make_fake, FaultKind.PENDING, pending_requests=asks)
    call = recorded_calls(fake)[0]
    path = f"/v1/call/{call.call_id}/recording"
    statuses = [(await api_get(http, fake, path)).status for _ in range(asks + 2)]
    assert statuses == [404] * asks + [200, 200]
    assert fake.stats.faults_fired == {"pending": asks}


async def test_pending_counts_asks_per_call(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.PENDING, pending_requests=1)
    first, second = recorded_calls(fake)[:2]
    assert (await api_get(http, fake, f"/v1/call/{first.call_id}/recording")).status == 404
    assert (await api_get(http, fake, f"/v1/call/{second.call_id}/recording")).status == 404
    assert (await api_get(http, fake, f"/v1/call/{first.call_id}/recording")).status == 200


async def test_once_per_call_fault_fires_once_for_each_call(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.REC_500)
    calls = recorded_calls(fake)[:3]
    for call in calls:
        url = await recording_url(http, fake, call.call_id)
        assert [(await get(http, url)).status for _ in range(3)] == [500, 200, 200]
    assert fake.stats.faults_fired == {"rec-500": 3}


async def test_fault_with_times_fires_that_many_times_per_call(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    _fake, _call, url = await _faulty_url(
        make_fake, http, FaultKind.REC_503, Fault(rate=1.0, times=2)
    )
    assert [(await get(http, url)).status for _ in range(4)] == [503, 503, 200, 200]


async def test_fault_with_times_none_never_clears(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_500, Fault(rate=1.0, times=None))
    call = recorded_calls(fake)[0]
    path = f"/v1/call/{call.call_id}/recording"
    assert [(await api_get(http, fake, path)).status for _ in range(6)] == [500] * 6
    assert fake.stats.faults_fired == {"api-500": 6}


async def test_fault_with_explicit_calls_hits_only_those_calls(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    ids = [call.call_id for call in recorded_calls(FakeOSVI(FakeConfig(seed=3)))]
    chosen = frozenset(ids[1:3])
    fake = await make_fake(
        FakeConfig(seed=3, faults={FaultKind.REC_500: Fault(calls=chosen, times=None)})
    )
    for call in recorded_calls(fake)[:5]:
        answer = await _download(http, fake, call)
        assert answer.status == (500 if call.call_id in chosen else 200)
    assert fake.stats.faults_fired == {"rec-500": 2}


async def test_fault_rate_hits_the_same_calls_for_the_same_seed(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    faulted: list[set[str]] = []
    for _ in range(2):
        fake = await make_fake(FakeConfig(seed=5, faults={FaultKind.REC_500: Fault(rate=0.5)}))
        hit = set()
        for call in recorded_calls(fake):
            url = await recording_url(http, fake, call.call_id)
            async with http.get(url) as response:
                if response.status == 500:
                    hit.add(call.call_id)
        faulted.append(hit)
    assert faulted[0] == faulted[1]
    assert 0 < len(faulted[0]) < len(recorded_calls(fake))


async def test_body_fault_counts_the_bytes_actually_sent(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(make_fake, http, FaultKind.CUT)
    await _broken_download(http, url)
    assert (await get(http, url)).status == 200
    stats = (await get(http, f"{fake.base_url}/_fake/stats")).json()
    assert stats["bytes_sent"] == SIZE // 2 + SIZE
    assert stats["calls"][call.call_id]["downloads_complete"] == 1
    assert stats["calls"][call.call_id]["statuses"] == {"recording:200": 1, "download:200": 2}
    assert stats["faults_fired"] == {"cut": 1}


# --- pacing knobs --------------------------------------------------------------------------


async def test_bandwidth_knob_slows_a_download(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    bandwidth = 400_000  # bytes/s: SIZE takes 0.5 s
    fake = await make_fake(FakeConfig(size_min=SIZE, size_max=SIZE, bandwidth=bandwidth))
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    began = time.monotonic()
    answer = await get(http, url)
    elapsed = time.monotonic() - began
    assert answer.body == full_body(fake, call)
    assert elapsed >= 0.5 * SIZE / bandwidth


async def test_api_latency_delays_every_api_answer(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(api_latency=0.2))
    for path in ("/v1/calls", f"/v1/call/{recorded_calls(fake)[0].call_id}/recording"):
        began = time.monotonic()
        assert (await api_get(http, fake, path)).status == 200
        assert time.monotonic() - began >= 0.19


async def test_download_latency_delays_the_recording_headers(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(download_latency=0.2))
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    began = time.monotonic()
    async with http.get(url) as response:
        assert time.monotonic() - began >= 0.19
        assert response.status == 200
        assert await response.read() == full_body(fake, call)


# --- hostile and broken knobs (issue 11) ----------------------------------------------------


async def test_trickle_sends_the_whole_body_at_the_trickle_rate(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.TRICKLE, size_min=64, size_max=64, trickle_rate=256)
    call = recorded_calls(fake)[0]
    began = time.monotonic()
    answer = await _download(http, fake, call)
    assert answer.body == full_body(fake, call)
    assert time.monotonic() - began >= 64 / 256 * 0.8


async def test_endless_has_no_length_and_no_end(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    _fake, _call, url = await _faulty_url(make_fake, http, FaultKind.ENDLESS)
    async with http.get(url) as response:
        assert response.status == 200
        assert "Content-Length" not in response.headers
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > 4 * SIZE:
                break
    assert received > 4 * SIZE


async def test_gzip_answers_gzip_only_to_a_client_that_asks(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake, call, url = await _faulty_url(
        make_fake, http, FaultKind.GZIP, fault=Fault(rate=1.0, times=None)
    )
    async with http.get(url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert await r.read() != full_body(fake, call)
    plain = await get(http, url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert plain.body == full_body(fake, call)


async def test_api_echo_puts_the_token_and_escapes_in_an_error_body(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_ECHO)
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert answer.status == 400
    error = answer.json()["error"]
    assert fake.token in error
    assert "\x1b[31m" in error


async def test_api_huge_answers_a_body_of_the_size_asked(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await _faulty(make_fake, FaultKind.API_HUGE, huge_body=3 << 20)
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert answer.status == 200
    assert len(answer.body) >= 3 << 20
    assert answer.json()["success"] is True


async def test_per_call_urls_lifetimes_and_redirects(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    probe = recorded_calls(FakeOSVI(FakeConfig(calls=6)))
    a, b, c = (call.call_id for call in probe[:3])
    config = FakeConfig(
        calls=6,
        recording_urls={a: "https://a..b/x.mp4", b: "{signed}&extra=1"},
        expires_in={a: float("nan"), b: "<omit>"},
        redirects={c: "{signed}"},
    )
    fake = await make_fake(config)
    data_a = (await api_get(http, fake, f"/v1/call/{a}/recording")).body.decode()
    assert '"recording_url": "https://a..b/x.mp4"' in data_a
    assert "NaN" in data_a
    data_b = (await api_get(http, fake, f"/v1/call/{b}/recording")).json()["data"]
    assert "expires_in_seconds" not in data_b
    assert data_b["recording_url"].endswith("&extra=1")
    url = await recording_url(http, fake, c)
    async with http.get(url, allow_redirects=False) as first:
        assert first.status == 302
        assert "hop=1" in first.headers["Location"]
    followed = await get(http, url)
    assert followed.status == 200
    assert followed.body == full_body(fake, next(x for x in fake.calls if x.call_id == c))


async def test_null_fields_and_listed_ids_change_what_is_shown_not_what_is_filtered(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    probe = [c for c in FakeOSVI(FakeConfig(calls=10)).calls if c.call_picked_at]
    a, b = probe[0].call_id, probe[1].call_id
    config = FakeConfig(
        calls=10,
        null_fields={a: frozenset({"agent_uuid", "created_at"})},
        listed_ids={b: 12345},
    )
    fake = await make_fake(config)
    detail = (await api_get(http, fake, f"/v1/call/{a}")).json()["data"]
    assert detail["agent_uuid"] is None
    assert detail["created_at"] is None
    listed = (await api_get(http, fake, "/v1/calls", {"per_page": "100"})).json()["data"]
    shown_ids = [item["call_id"] for item in listed]
    assert 12345 in shown_ids
    assert b not in shown_ids
    assert next(i for i in listed if i["call_id"] == a)["agent_uuid"] is None
