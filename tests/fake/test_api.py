"""The fake's API face on loopback: documented envelopes, errors, listing filters, counters."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from archiver.fake import FakeCall, FakeConfig, FakeOSVI
from archiver.fake.calls import IST
from tests.conftest import FakeFactory
from tests.fake.fake_client import api_get, get, recorded_calls

LIST_FIELDS = {
    "call_id",
    "agent_uuid",
    "agent_name",
    "phone_number",
    "from_number",
    "status",
    "call_type",
    "duration_seconds",
    "call_ended_by",
    "call_ended_reason",
    "campaign_id",
    "campaign_upload_id",
    "tag",
    "created_at",
    "call_picked_at",
}
DETAIL_EXTRA = {"caller_name", "retry_count", "summary", "data_captured", "post_call_analysis"}
UNANSWERED = ("not_picked", "failed", "busy")
# An account whose calls fall around known IST days: 2026-05-29 .. 2026-06-03 (UTC noon).
DATED = FakeConfig(calls=200, end_time=datetime(2026, 6, 3, 12, tzinfo=UTC).timestamp(), days=5)


def _call_with(fake: FakeOSVI, status: str) -> FakeCall:
    return next(call for call in fake.calls if call.status == status)


async def _list_all(
    http: aiohttp.ClientSession, fake: FakeOSVI, params: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every listed item across all pages, in listing order."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        query = {**(params or {}), "page": str(page), "per_page": "100"}
        answer = await api_get(http, fake, "/v1/calls", query)
        assert answer.status == 200, answer.text
        body = answer.json()
        items += body["data"]
        if page >= body["meta"]["total_pages"]:
            return items
        page += 1


async def _listed_ids(
    http: aiohttp.ClientSession, fake: FakeOSVI, params: dict[str, str]
) -> set[str]:
    items = await _list_all(http, fake, params)
    ids = [item["call_id"] for item in items]
    assert len(ids) == len(set(ids))
    return set(ids)


def _ids(calls: list[FakeCall]) -> set[str]:
    return {call.call_id for call in calls}


# --- success envelopes ---------------------------------------------------------------------


async def test_recording_answers_call_id_presigned_url_and_lifetime(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["success"] is True
    assert set(body["data"]) == {"call_id", "recording_url", "expires_in_seconds"}
    assert body["data"]["call_id"] == call.call_id
    assert body["data"]["expires_in_seconds"] == 900
    url = urlsplit(body["data"]["recording_url"])
    assert f"{url.scheme}://{url.netloc}" == fake.recording_origin
    assert url.path == f"/recordings/{call.call_id}.mp4"
    assert {name for name, _ in parse_qsl(url.query)} >= {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }


async def test_recording_host_is_another_origin_than_the_api(fake: FakeOSVI) -> None:
    assert fake.recording_origin.startswith("http://127.0.0.1:")
    assert fake.recording_origin != fake.base_url


async def test_recording_url_lifetime_follows_the_knob(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(url_lifetime=42))
    call = recorded_calls(fake)[0]
    data = (await api_get(http, fake, f"/v1/call/{call.call_id}/recording")).json()["data"]
    assert data["expires_in_seconds"] == 42
    assert dict(parse_qsl(urlsplit(data["recording_url"]).query))["X-Amz-Expires"] == "42"


async def test_calls_answers_data_and_pagination_meta(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    answer = await api_get(http, fake, "/v1/calls")
    assert answer.status == 200
    body = answer.json()
    assert set(body) == {"success", "data", "meta"}
    assert body["success"] is True
    assert body["meta"] == {"current_page": 1, "total_pages": 2, "total_count": 50, "per_page": 25}
    assert len(body["data"]) == 25
    assert all(set(item) == LIST_FIELDS for item in body["data"])


async def test_call_items_carry_the_generated_values_with_ist_timestamps(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    items = await _list_all(http, fake)
    by_id = {call.call_id: call for call in fake.calls}
    for item in items:
        call = by_id[item["call_id"]]
        assert item["status"] == call.status
        assert item["agent_uuid"] == call.agent_uuid
        assert item["phone_number"] == call.phone_number
        assert item["created_at"].endswith("+05:30")
        assert datetime.fromisoformat(item["created_at"]) == call.created_at
        assert set(item["tag"]) == {"id", "name", "color_code"}
        if call.call_picked_at is None:
            assert item["call_picked_at"] is None
        else:
            assert item["call_picked_at"].endswith("+05:30")
            assert datetime.fromisoformat(item["call_picked_at"]) == call.call_picked_at


async def test_call_detail_has_the_list_fields_plus_the_detail_fields(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    listed = next(i for i in await _list_all(http, fake) if i["call_id"] == call.call_id)
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}")
    assert answer.status == 200
    body = answer.json()
    assert body["success"] is True
    detail = body["data"]
    assert set(detail) == LIST_FIELDS | DETAIL_EXTRA
    assert {k: detail[k] for k in LIST_FIELDS} == listed
    assert isinstance(detail["caller_name"], str)
    assert isinstance(detail["retry_count"], int)
    assert isinstance(detail["summary"], str)
    assert isinstance(detail["data_captured"], dict)
    assert isinstance(detail["post_call_analysis"], dict)


async def test_detail_padding_makes_a_large_detail_of_many_small_objects(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(calls=4, detail_padding=3 << 20))
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}")
    assert 3 << 20 <= len(answer.body) < (3 << 20) + 4096
    detail = answer.json()["data"]
    assert set(detail) == LIST_FIELDS | DETAIL_EXTRA | {"padding"}
    assert len(detail["padding"]) > 30_000
    assert all(turn["role"] == "agent" for turn in detail["padding"])


async def test_transcript_answers_call_id_and_turn_objects(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/transcript")
    assert answer.status == 200
    body = answer.json()
    assert body["success"] is True
    assert set(body["data"]) == {"call_id", "transcript"}
    assert body["data"]["call_id"] == call.call_id
    turns = body["data"]["transcript"]
    assert len(turns) >= 2
    assert all(isinstance(turn, dict) and turn["text"] for turn in turns)


async def test_transcript_of_an_unanswered_call_is_an_empty_array(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = _call_with(fake, "not_picked")
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/transcript")
    assert answer.status == 200
    assert answer.json()["data"] == {"call_id": call.call_id, "transcript": []}


# --- errors --------------------------------------------------------------------------------

ENDPOINTS = ["/v1/call/{id}/recording", "/v1/calls", "/v1/call/{id}", "/v1/call/{id}/transcript"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "token",
    [None, "", "wrong-token-0000", "FAKE-TOKEN-0001X"],
    ids=["none", "empty", "wrong", "case"],
)
async def test_missing_or_wrong_token_answers_401_invalid_api_token(
    fake: FakeOSVI, http: aiohttp.ClientSession, endpoint: str, token: str | None
) -> None:
    call = recorded_calls(fake)[0]
    url = fake.base_url + endpoint.format(id=call.call_id)
    headers = {} if token is None else {"API-Token": token}
    answer = await get(http, url, headers=headers)
    assert answer.status == 401
    assert answer.json() == {"success": False, "error": "Invalid API token"}


async def test_token_in_an_authorization_header_is_not_accepted(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {fake.token}"}
    answer = await get(http, f"{fake.base_url}/v1/calls", headers=headers)
    assert answer.status == 401


@pytest.mark.parametrize("status", ["not_picked", "failed", "busy", "in_progress"])
async def test_recording_of_a_call_without_recording_answers_404_recording_not_available(
    fake: FakeOSVI, http: aiohttp.ClientSession, status: str
) -> None:
    call = _call_with(fake, status)
    answer = await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    assert answer.status == 404
    assert answer.json() == {"success": False, "error": "recording_not_available", "details": None}


@pytest.mark.parametrize(
    "call_id", [str(uuid.UUID(int=7, version=4)), "not-a-uuid", "12345"], ids=str
)
async def test_recording_of_an_unknown_or_malformed_id_answers_404_recording_not_available(
    fake: FakeOSVI, http: aiohttp.ClientSession, call_id: str
) -> None:
    answer = await api_get(http, fake, f"/v1/call/{call_id}/recording")
    assert answer.status == 404
    assert answer.json()["error"] == "recording_not_available"


@pytest.mark.parametrize("suffix", ["", "/transcript"], ids=["detail", "transcript"])
@pytest.mark.parametrize(
    "call_id", [str(uuid.UUID(int=7, version=4)), "not-a-uuid"], ids=["unknown", "malformed"]
)
async def test_detail_and_transcript_of_an_unknown_or_malformed_id_answer_404_call_not_found(
    fake: FakeOSVI, http: aiohttp.ClientSession, call_id: str, suffix: str
) -> None:
    answer = await api_get(http, fake, f"/v1/call/{call_id}{suffix}")
    assert answer.status == 404
    assert answer.json() == {"success": False, "error": "call_not_found", "details": None}


async def test_agent_not_on_the_account_answers_404_agent_not_found(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    stranger = str(uuid.UUID(int=99, version=4))
    answer = await api_get(http, fake, "/v1/calls", {"agent_uuid": stranger})
    assert answer.status == 404
    assert answer.json() == {"success": False, "error": "agent_not_found", "details": None}


@pytest.mark.parametrize(
    "params",
    [
        {"status": "answered"},
        {"status": "picked,bogus"},
        {"status": ""},
        {"per_page": "0"},
        {"per_page": "-5"},
        {"per_page": "many"},
        {"page": "0"},
        {"call_type": "sideways"},
        {"campaign_id": "first"},
        {"start_date": "yesterday"},
        {"end_date": "2026-13-01"},
        {"start_date": "2026-06-01T00:00:00"},
        {"end_date": "01/06/2026"},
    ],
    ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()),
)
async def test_bad_listing_parameter_answers_422_with_an_errors_array(
    fake: FakeOSVI, http: aiohttp.ClientSession, params: dict[str, str]
) -> None:
    answer = await api_get(http, fake, "/v1/calls", params)
    assert answer.status == 422
    body = answer.json()
    assert body["success"] is False
    assert isinstance(body["errors"], list)
    assert body["errors"]
    assert all(isinstance(m, str) and m for m in body["errors"])
    name = next(iter(params))
    assert any(name.split("_")[0] in message for message in body["errors"])


async def test_unknown_path_answers_404(fake: FakeOSVI, http: aiohttp.ClientSession) -> None:
    answer = await api_get(http, fake, "/v2/calls")
    assert answer.status == 404


# --- listing -------------------------------------------------------------------------------


async def test_listing_is_newest_first(fake: FakeOSVI, http: aiohttp.ClientSession) -> None:
    items = await _list_all(http, fake)
    created = [datetime.fromisoformat(item["created_at"]) for item in items]
    assert created == sorted(created, reverse=True)
    assert [item["call_id"] for item in items] == [call.call_id for call in fake.calls]


async def test_pages_cover_every_call_exactly_once(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    seen: list[str] = []
    for page in range(1, 9):
        answer = await api_get(http, fake, "/v1/calls", {"page": str(page), "per_page": "7"})
        body = answer.json()
        assert body["meta"] == {
            "current_page": page,
            "total_pages": 8,
            "total_count": 50,
            "per_page": 7,
        }
        assert len(body["data"]) == (7 if page < 8 else 1)
        seen += [item["call_id"] for item in body["data"]]
    assert len(seen) == 50
    assert set(seen) == _ids(fake.calls)


async def test_page_past_the_end_is_empty(fake: FakeOSVI, http: aiohttp.ClientSession) -> None:
    body = (await api_get(http, fake, "/v1/calls", {"page": "3"})).json()
    assert body["data"] == []
    assert body["meta"]["total_count"] == 50


async def test_per_page_is_capped_at_100(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(calls=150))
    body = (await api_get(http, fake, "/v1/calls", {"per_page": "500"})).json()
    assert len(body["data"]) == 100
    assert body["meta"] == {
        "current_page": 1,
        "total_pages": 2,
        "total_count": 150,
        "per_page": 100,
    }


async def test_status_filter_keeps_only_that_status(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    listed = await _listed_ids(http, fake, {"status": "voicemail"})
    expected = _ids([c for c in fake.calls if c.status == "voicemail"])
    assert expected
    assert listed == expected


async def test_status_filter_accepts_a_comma_list(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    listed = await _listed_ids(http, fake, {"status": "busy,failed, in_progress"})
    expected = _ids([c for c in fake.calls if c.status in {"busy", "failed", "in_progress"}])
    assert len(expected) >= 3
    assert listed == expected


@pytest.mark.parametrize("call_type", ["inbound", "outbound"])
async def test_call_type_filter_keeps_only_that_direction(
    fake: FakeOSVI, http: aiohttp.ClientSession, call_type: str
) -> None:
    listed = await _listed_ids(http, fake, {"call_type": call_type})
    expected = _ids([c for c in fake.calls if c.call_type == call_type])
    assert 0 < len(expected) < 50
    assert listed == expected


async def test_agent_uuid_filter_keeps_only_that_agents_calls(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    agent = fake.calls[0].agent_uuid
    listed = await _listed_ids(http, fake, {"agent_uuid": agent})
    expected = _ids([c for c in fake.calls if c.agent_uuid == agent])
    assert 0 < len(expected) < 50
    assert listed == expected


@pytest.mark.parametrize("name", ["campaign_id", "campaign_upload_id"])
async def test_campaign_filters_keep_only_that_campaign(
    fake: FakeOSVI, http: aiohttp.ClientSession, name: str
) -> None:
    wanted = getattr(fake.calls[0], name)
    listed = await _listed_ids(http, fake, {name: str(wanted)})
    expected = _ids([c for c in fake.calls if getattr(c, name) == wanted])
    assert 0 < len(expected) < 50
    assert listed == expected


@pytest.mark.parametrize("part", [slice(4, 9), slice(0, 6), slice(-4, None)], ids=str)
async def test_phone_number_filter_matches_part_of_the_number(
    fake: FakeOSVI, http: aiohttp.ClientSession, part: slice
) -> None:
    fragment = fake.calls[3].phone_number[part]
    listed = await _listed_ids(http, fake, {"phone_number": fragment})
    expected = _ids([c for c in fake.calls if fragment in c.phone_number])
    assert fake.calls[3].call_id in listed
    assert listed == expected


async def test_filters_combine(fake: FakeOSVI, http: aiohttp.ClientSession) -> None:
    params = {"status": "picked", "call_type": "inbound", "campaign_id": "2"}
    listed = await _listed_ids(http, fake, params)
    expected = _ids(
        [
            c
            for c in fake.calls
            if c.status == "picked" and c.call_type == "inbound" and c.campaign_id == 2
        ]
    )
    assert expected
    assert listed == expected


def _picked_between(fake: FakeOSVI, low: datetime, high: datetime) -> set[str]:
    return {
        c.call_id
        for c in fake.calls
        if c.call_picked_at is not None and low <= c.call_picked_at <= high
    }


async def test_bare_start_date_is_the_start_of_that_day_in_ist(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(DATED)
    ist_midnight = datetime(2026, 6, 1, tzinfo=IST)  # 2026-05-31T18:30Z
    far = datetime(2100, 1, 1, tzinfo=UTC)
    # Calls between IST and UTC midnight tell the two readings apart.
    assert _picked_between(fake, ist_midnight, datetime(2026, 6, 1, tzinfo=UTC))
    listed = await _listed_ids(http, fake, {"start_date": "2026-06-01"})
    assert listed == _picked_between(fake, ist_midnight, far)


async def test_bare_end_date_is_the_whole_of_that_day_in_ist(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(DATED)
    day_start = datetime(2026, 6, 1, tzinfo=IST)
    day_end = day_start + timedelta(days=1, microseconds=-1)  # 2026-06-01T18:29:59.999999Z
    past = datetime(2000, 1, 1, tzinfo=UTC)
    # Calls later that IST day, and calls after it but still on that UTC day, must both exist.
    assert _picked_between(fake, day_start, day_end)
    assert _picked_between(fake, day_end, datetime(2026, 6, 2, tzinfo=UTC))
    listed = await _listed_ids(http, fake, {"end_date": "2026-06-01"})
    assert listed == _picked_between(fake, past, day_end)


async def test_same_bare_start_and_end_date_is_one_ist_day(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(DATED)
    listed = await _listed_ids(http, fake, {"start_date": "2026-06-02", "end_date": "2026-06-02"})
    low = datetime(2026, 6, 2, tzinfo=IST)
    expected = _picked_between(fake, low, low + timedelta(days=1, microseconds=-1))
    assert len(expected) > 10
    assert listed == expected


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-06-01T10:00:00+02:00", "2026-06-02T03:15:00-01:00"),
        ("2026-05-31T20:00:00Z", "2026-06-01T09:30:00+00:00"),
        ("2026-06-02T06:00:00+05:30", "2026-06-02T18:45:30.500000+05:30"),
    ],
)
async def test_iso_timestamps_with_offsets_bound_call_picked_at(
    make_fake: FakeFactory, http: aiohttp.ClientSession, start: str, end: str
) -> None:
    fake = await make_fake(DATED)
    low = datetime.fromisoformat(start)
    high = datetime.fromisoformat(end)
    expected = _picked_between(fake, low, high)
    assert expected
    assert await _listed_ids(http, fake, {"start_date": start, "end_date": end}) == expected


async def test_date_bounds_are_inclusive(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(DATED)
    call = recorded_calls(fake)[5]
    assert call.call_picked_at is not None
    moment = call.call_picked_at.isoformat()
    listed = await _listed_ids(http, fake, {"start_date": moment, "end_date": moment})
    assert call.call_id in listed
    assert listed == _picked_between(fake, call.call_picked_at, call.call_picked_at)


async def test_date_filters_leave_out_unanswered_calls(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(DATED)
    unanswered = _ids([c for c in fake.calls if c.call_picked_at is None])
    assert unanswered
    for params in ({"start_date": "2000-01-01"}, {"end_date": "2100-01-01"}):
        items = await _list_all(http, fake, params)
        assert all(item["call_picked_at"] is not None for item in items)
        assert {item["call_id"] for item in items} == _ids(fake.calls) - unanswered


async def test_calls_added_midway_appear_first_and_shift_later_pages(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    before = (await api_get(http, fake, "/v1/calls", {"per_page": "10"})).json()["data"]
    added = fake.add_calls(3)
    after = (await api_get(http, fake, "/v1/calls", {"per_page": "10"})).json()
    assert after["meta"]["total_count"] == 53
    ids = [item["call_id"] for item in after["data"]]
    assert set(ids[:3]) == _ids(added)
    assert ids[:3] == [call.call_id for call in reversed(added)]
    assert ids[3:] == [item["call_id"] for item in before[:7]]


async def test_added_calls_get_new_ids_and_can_be_asked_for(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    added = fake.add_calls(20)
    assert not _ids(added) & _ids(fake.calls[20:])
    assert len(_ids(fake.calls)) == 70
    call = next(c for c in added if c.has_recording)
    assert (await api_get(http, fake, f"/v1/call/{call.call_id}/recording")).status == 200
    assert (await api_get(http, fake, f"/v1/call/{call.call_id}")).json()["data"]["call_id"] == (
        call.call_id
    )


# --- counters ------------------------------------------------------------------------------


async def test_stats_count_api_requests_per_endpoint_status_and_call(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call, other = recorded_calls(fake)[:2]
    await api_get(http, fake, "/v1/calls")
    await api_get(http, fake, "/v1/calls", {"page": "2"})
    await api_get(http, fake, "/v1/calls", token="wrong-token-0000")
    await api_get(http, fake, "/v1/calls", {"status": "nope"})
    await api_get(http, fake, f"/v1/call/{call.call_id}")
    await api_get(http, fake, f"/v1/call/{call.call_id}/transcript")
    await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    await api_get(http, fake, f"/v1/call/{other.call_id}/recording", token=None)
    await api_get(http, fake, f"/v1/call/{uuid.UUID(int=3, version=4)}/recording")
    stats = fake.stats
    assert stats.requests == Counter({"calls": 4, "call": 1, "transcript": 1, "recording": 4})
    assert stats.statuses == Counter(
        {
            "calls:200": 2,
            "calls:401": 1,
            "calls:422": 1,
            "call:200": 1,
            "transcript:200": 1,
            "recording:200": 2,
            "recording:401": 1,
            "recording:404": 1,
        }
    )
    assert set(stats.calls) == {call.call_id, other.call_id}
    assert stats.call(call.call_id).requests == Counter(
        {"call": 1, "transcript": 1, "recording": 2}
    )
    assert stats.call(other.call_id).statuses == Counter({"recording:401": 1})


async def test_stats_endpoint_serves_the_counters_as_json_without_a_token(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = recorded_calls(fake)[0]
    await api_get(http, fake, "/v1/calls")
    await api_get(http, fake, f"/v1/call/{call.call_id}/recording")
    answer = await get(http, f"{fake.base_url}/_fake/stats")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body == fake.stats.to_json()
    assert body["requests"] == {"calls": 1, "recording": 1}
    assert body["statuses"] == {"calls:200": 1, "recording:200": 1}
    assert body["calls"][call.call_id]["requests"] == {"recording": 1}
    assert body["leaks"] == 0
    assert body["expired_uses"] == 0
    assert body["faults_fired"] == {}
    assert body["bytes_sent"] == 0


async def test_asking_for_stats_is_not_itself_counted(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        await get(http, f"{fake.base_url}/_fake/stats")
    assert fake.stats.requests == Counter()


# --- a listing that lies (issue 20) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "meta"),
    [
        ("null", None),
        ("page-count", {"current_page": 1, "total_pages": 1, "total_count": 7, "per_page": 7}),
        ("inflated", {"current_page": 1, "total_pages": 7286, "total_count": 51000, "per_page": 7}),
    ],
)
async def test_listing_meta_lies_as_the_knob_says(
    make_fake: FakeFactory, http: aiohttp.ClientSession, mode: str, meta: dict[str, int] | None
) -> None:
    fake = await make_fake(FakeConfig(list_meta=mode))
    body = (await api_get(http, fake, "/v1/calls", {"per_page": "7"})).json()
    assert len(body["data"]) == 7
    assert body["meta"] == meta


async def test_listing_meta_can_be_absent(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(list_meta="absent"))
    body = (await api_get(http, fake, "/v1/calls")).json()
    assert set(body) == {"success", "data"}


async def test_an_ignored_page_answers_page_one_to_every_page(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(list_ignore_page=True))
    first = (await api_get(http, fake, "/v1/calls", {"per_page": "10"})).json()
    third = (await api_get(http, fake, "/v1/calls", {"per_page": "10", "page": "3"})).json()
    assert third["data"] == first["data"]
    assert third["meta"]["current_page"] == 3  # it says so, and lies


async def test_repeated_pages_repeat_the_page_before_then_heal(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(list_repeat_pages=1))
    query = {"per_page": "10"}
    first = (await api_get(http, fake, "/v1/calls", {**query, "page": "1"})).json()["data"]
    glitch = (await api_get(http, fake, "/v1/calls", {**query, "page": "2"})).json()["data"]
    healed = (await api_get(http, fake, "/v1/calls", {**query, "page": "2"})).json()["data"]
    assert glitch == first
    assert [i["call_id"] for i in healed] == [c.call_id for c in fake.calls[10:20]]


async def test_naive_and_shifted_times_are_shown_but_filters_see_the_real_ones(
    make_fake: FakeFactory, http: aiohttp.ClientSession
) -> None:
    fake = await make_fake(FakeConfig(naive_dates=True, time_shift=3600))
    items = await _list_all(http, fake)
    call = fake.calls[0]
    item = next(i for i in items if i["call_id"] == call.call_id)
    shown = datetime.fromisoformat(item["created_at"])
    assert shown.tzinfo is None
    assert shown == (call.created_at + timedelta(hours=1)).astimezone(IST).replace(tzinfo=None)
    detail = (await api_get(http, fake, f"/v1/call/{call.call_id}")).json()["data"]
    assert detail["created_at"] == item["created_at"]
    assert len(items) == 50  # the listing's own filters use the true times
