"""The fake's recording host on loopback: presigned URLs, expiry, headers, Range, leaks, seeds."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest

from archiver.fake import FakeCall, FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.fake.stats import Leak
from tests.conftest import FakeFactory
from tests.fake.fake_client import full_body, get, recorded_calls, recording_url

START = 1_780_000_000.0  # the injected clock's first reading (2026-05-28)
EXPIRED_XML = "<Code>AccessDenied</Code><Message>Request has expired</Message>"


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return parts._replace(query=urlencode(query)).geturl()


async def _fake_at(make_fake: FakeFactory, now: list[float], **config: object) -> FakeOSVI:
    """A fake whose clock reads `now[0]`: tests move time by assigning to it."""
    return await make_fake(FakeConfig(**config), clock=lambda: now[0])  # type: ignore[arg-type]


async def _minted(
    make_fake: FakeFactory, http: aiohttp.ClientSession, **config: object
) -> tuple[list[float], FakeOSVI, FakeCall, str]:
    """A fake on a clock the test moves (`now[0]`), its first recorded call, and a URL for
    it minted at START."""
    now = [START]
    fake = await _fake_at(make_fake, now, **config)
    call = recorded_calls(fake)[0]
    return now, fake, call, await recording_url(http, fake, call.call_id)


# --- presigned URLs and expiry -------------------------------------------------------------


async def test_presigned_url_downloads_with_no_credentials(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    answer = await get(http, await recording_url(http, fake, call.call_id))
    assert answer.status == 200
    assert answer.body == full_body(fake, call)
    assert hashlib.sha256(answer.body).hexdigest() == fake.account.expected_sha256(call.call_id)


async def test_presigned_url_works_through_the_last_second_of_its_lifetime(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    now, fake, call, url = await _minted(make_fake, http)
    now[0] += 900
    answer = await get(http, url)
    assert answer.status == 200
    assert len(answer.body) == call.size
    assert fake.stats.expired_uses == 0


async def test_expired_url_answers_403_xml_request_has_expired(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    now, fake, call, url = await _minted(make_fake, http)
    assert (await get(http, url)).status == 200
    now[0] += 900.01
    answer = await get(http, url)
    assert answer.status == 403
    assert answer.headers["Content-Type"].startswith("application/xml")
    assert answer.text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert EXPIRED_XML in answer.text
    assert fake.stats.expired_uses == 1
    assert fake.stats.call(call.call_id).statuses["download:403"] == 1
    assert fake.stats.call(call.call_id).downloads_complete == 1


async def test_short_lifetime_url_expires_after_that_lifetime(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    now, _fake, _call, url = await _minted(make_fake, http, url_lifetime=2)
    now[0] += 1.9
    assert (await get(http, url)).status == 200
    now[0] += 0.2
    assert EXPIRED_XML in (await get(http, url)).text


async def test_fresh_url_from_the_api_works_after_the_old_one_expired(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    now, fake, call, old = await _minted(make_fake, http)
    now[0] += 3600
    assert (await get(http, old)).status == 403
    fresh = await recording_url(http, fake, call.call_id)
    assert fresh != old
    answer = await get(http, fresh)
    assert answer.status == 200
    assert answer.body == full_body(fake, call)
    assert fake.stats.expired_uses == 1


async def test_tampered_signature_answers_403_signature_mismatch(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    forged = signature[:-1] + ("a" if signature[-1] != "a" else "b")
    answer = await get(http, _with_query(url, **{"X-Amz-Signature": forged}))
    assert answer.status == 403
    assert "<Code>AccessDenied</Code>" in answer.text
    assert "signature we calculated does not match" in answer.text
    assert "Request has expired" not in answer.text
    assert fake.stats.bad_signatures == 1
    assert fake.stats.expired_uses == 0


async def test_lengthened_expiry_on_an_expired_url_answers_403_signature_mismatch(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    now, fake, _call, url = await _minted(make_fake, http)
    now[0] += 1000
    answer = await get(http, _with_query(url, **{"X-Amz-Expires": "604800"}))
    assert answer.status == 403
    assert "signature we calculated does not match" in answer.text
    assert fake.stats.bad_signatures == 1


async def test_url_of_one_call_does_not_open_another(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    first, second = recorded_calls(fake)[:2]
    url = await recording_url(http, fake, first.call_id)
    moved = url.replace(first.call_id, second.call_id)
    answer = await get(http, moved)
    assert answer.status == 403
    assert fake.stats.call(second.call_id).bytes_sent == 0


async def test_url_without_its_query_answers_403(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url.split("?")[0])
    assert answer.status == 403
    assert "<Code>AccessDenied</Code>" in answer.text


# --- headers and body ----------------------------------------------------------------------


async def test_download_headers_describe_the_body_with_md5_etag(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    answer = await get(http, await recording_url(http, fake, call.call_id))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "audio/mp4"
    assert answer.headers["Content-Length"] == str(call.size)
    assert answer.headers["Accept-Ranges"] == "bytes"
    assert "Content-Range" not in answer.headers
    md5 = hashlib.md5(answer.body, usedforsecurity=False).hexdigest()
    assert answer.headers["ETag"] == f'"{md5}"'
    assert len(answer.body) == call.size
    assert answer.body[4:8] == b"ftyp"


async def test_sizes_stay_within_the_size_knobs(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(calls=20, size_min=1000, size_max=3000))
    assert all(1000 <= call.size <= 3000 for call in fake.calls)
    call = recorded_calls(fake)[0]
    answer = await get(http, await recording_url(http, fake, call.call_id))
    assert len(answer.body) == call.size


@pytest.mark.parametrize("offset", [1, 35, 36, 100_000, -1], ids=["1", "35", "36", "100k", "last"])
async def test_open_range_answers_206_with_content_range_and_the_tail(
    make_fake: FakeFactory, http: aiohttp.ClientSession, offset: int
) -> None:
    fake = await make_fake(FakeConfig(calls=5, size_min=300_000, size_max=300_000))
    call = recorded_calls(fake)[0]
    start = offset % call.size
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url, headers={"Range": f"bytes={start}-"})
    assert answer.status == 206
    assert answer.headers["Content-Range"] == f"bytes {start}-{call.size - 1}/{call.size}"
    assert answer.headers["Content-Length"] == str(call.size - start)
    assert answer.body == full_body(fake, call)[start:]
    whole_md5 = hashlib.md5(full_body(fake, call), usedforsecurity=False).hexdigest()
    assert answer.headers["ETag"] == f'"{whole_md5}"'


async def test_closed_range_answers_206_with_just_those_bytes(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url, headers={"Range": "bytes=10-19"})
    assert answer.status == 206
    assert answer.headers["Content-Range"] == f"bytes 10-19/{call.size}"
    assert answer.body == full_body(fake, call)[10:20]


async def test_range_past_the_end_answers_416(fake: FakeOSVI, http: aiohttp.ClientSession) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url, headers={"Range": f"bytes={call.size}-"})
    assert answer.status == 416
    assert answer.headers["Content-Range"] == f"bytes */{call.size}"
    assert "<Code>InvalidRange</Code>" in answer.text


async def test_ignore_range_answers_200_with_the_whole_body(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(ignore_range=True))
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url, headers={"Range": "bytes=1000-"})
    assert answer.status == 200
    assert "Content-Range" not in answer.headers
    assert answer.headers["Content-Length"] == str(call.size)
    assert answer.body == full_body(fake, call)


async def test_multipart_etag_has_a_part_suffix_and_is_not_the_md5(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(multipart_etag=True))
    call = recorded_calls(fake)[0]
    answer = await get(http, await recording_url(http, fake, call.call_id))
    assert answer.status == 200
    assert re.fullmatch(r'"[0-9a-f]{32}-2"', answer.headers["ETag"])
    md5 = hashlib.md5(answer.body, usedforsecurity=False).hexdigest()
    assert answer.headers["ETag"] != f'"{md5}"'


async def test_no_content_type_knob_sends_no_content_type(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(content_type=None))
    call = recorded_calls(fake)[0]
    answer = await get(http, await recording_url(http, fake, call.call_id))
    assert answer.status == 200
    assert "Content-Type" not in answer.headers
    assert answer.body == full_body(fake, call)


async def test_no_content_type_knob_keeps_content_type_on_error_bodies(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(content_type=None))
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url.split("?")[0])
    assert answer.status == 403
    assert answer.headers["Content-Type"].startswith("application/xml")


# --- credential leaks ----------------------------------------------------------------------


@pytest.mark.parametrize("header", ["API-Token", "Authorization", "api-token"])
async def test_credential_sent_to_the_recording_host_answers_400_and_is_counted_as_a_leak(
    fake: FakeOSVI, http: aiohttp.ClientSession, header: str
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    answer = await get(http, url, headers={header: fake.token})
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("application/xml")
    assert "<Code>InvalidArgument</Code>" in answer.text
    assert "Only one auth mechanism allowed" in answer.text
    canonical = "Authorization" if header == "Authorization" else "API-Token"
    assert fake.stats.leaks == [Leak(path=f"/recordings/{call.call_id}.mp4", header=canonical)]
    assert fake.stats.call(call.call_id).bytes_sent == 0
    assert fake.stats.call(call.call_id).statuses["download:400"] == 1


async def test_leak_counters_keep_the_header_name_but_never_its_value(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    await get(http, url, headers={"API-Token": fake.token})
    await get(http, url, headers={"Authorization": "Bearer s3cr3t-value-xyz"})
    stats = (await get(http, f"{fake.base_url}/_fake/stats")).json()
    assert stats["leaks"] == 2
    assert stats["leak_details"] == [
        {"path": f"/recordings/{call.call_id}.mp4", "header": "API-Token"},
        {"path": f"/recordings/{call.call_id}.mp4", "header": "Authorization"},
    ]
    dumped = json.dumps(stats)
    assert fake.token not in dumped
    assert "s3cr3t" not in dumped


async def test_download_without_credentials_is_not_a_leak(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    await get(http, await recording_url(http, fake, call.call_id), headers={"Cookie": "a=b"})
    assert fake.stats.leaks == []


# --- determinism ---------------------------------------------------------------------------


async def _first_recording(http: aiohttp.ClientSession, fake: FakeOSVI) -> bytes:
    call = min(recorded_calls(fake), key=lambda c: c.index)
    return (await get(http, await recording_url(http, fake, call.call_id))).body


async def test_same_seed_gives_the_same_call_ids_and_bytes(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    one = await make_fake(FakeConfig(seed=7))
    two = await make_fake(FakeConfig(seed=7))
    assert [c.call_id for c in one.calls] == [c.call_id for c in two.calls]
    assert [(c.status, c.size) for c in one.calls] == [(c.status, c.size) for c in two.calls]
    assert await _first_recording(http, one) == await _first_recording(http, two)


async def test_different_seed_gives_different_call_ids_and_bytes(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    one = await make_fake(FakeConfig(seed=7, size_min=100_000, size_max=100_000))
    two = await make_fake(FakeConfig(seed=8, size_min=100_000, size_max=100_000))
    assert not {c.call_id for c in one.calls} & {c.call_id for c in two.calls}
    first, second = await _first_recording(http, one), await _first_recording(http, two)
    assert len(first) == len(second) == 100_000
    assert first[:36] == second[:36]  # the same MP4 box headers
    assert first[36:] != second[36:]


async def test_calls_of_one_account_have_different_bytes(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    first, second = recorded_calls(fake)[:2]
    one = full_body(fake, first)
    two = full_body(fake, second)
    assert one[36:1036] != two[36:1036]
    assert (await get(http, await recording_url(http, fake, second.call_id))).body == two


# --- download counters ---------------------------------------------------------------------


async def test_stats_count_downloads_bytes_and_completions_per_call(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    await get(http, url)
    await get(http, url, headers={"Range": "bytes=1000-"})
    stats = fake.stats.call(call.call_id)
    assert stats.requests["download"] == 2
    assert stats.statuses == {"recording:200": 1, "download:200": 1, "download:206": 1}
    assert stats.bytes_sent == call.size + call.size - 1000
    assert stats.downloads_complete == 2
    assert fake.stats.bytes_sent == stats.bytes_sent
    served = (await get(http, f"{fake.base_url}/_fake/stats")).json()
    assert served["bytes_sent"] == 2 * call.size - 1000
    assert served["calls"][call.call_id]["downloads_complete"] == 2
    assert served["requests"]["download"] == 2


# --- shutdown ------------------------------------------------------------------------------


async def _refuses(origin: str) -> bool:
    host, port = urlsplit(origin).hostname, urlsplit(origin).port
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_stop_during_a_stalled_download_returns_promptly_and_frees_the_ports(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    stall = {FaultKind.STALL: Fault(rate=1.0)}
    fake = await make_fake(FakeConfig(stall_seconds=30.0, faults=stall))
    call = recorded_calls(fake)[0]
    url = await recording_url(http, fake, call.call_id)
    received = 0
    async with http.get(url) as response:
        while received < call.size // 2:
            received += len(await response.content.readany())
        began = time.monotonic()
        await fake.stop()
        assert time.monotonic() - began < 1.5  # stall_seconds is 30
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            await response.read()
    assert received == call.size // 2
    assert await _refuses(fake.base_url)
    assert await _refuses(fake.recording_origin)
    again = await make_fake(
        FakeConfig(),
        api_port=urlsplit(fake.base_url).port,
        recording_port=urlsplit(fake.recording_origin).port,
    )
    assert again.base_url == fake.base_url
    assert again.recording_origin == fake.recording_origin


async def test_stop_with_idle_keep_alive_connections_is_prompt(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    await get(http, await recording_url(http, fake, call.call_id))
    began = time.monotonic()
    await fake.stop()
    assert time.monotonic() - began < 1.0
    assert await _refuses(fake.base_url)
