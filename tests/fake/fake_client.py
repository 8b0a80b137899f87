"""A few plain-aiohttp helpers for talking to the fake service in its own tests.

Deliberately not the product's API client: these tests pin the fake's wire behaviour, so they
use nothing but a bare session and the documented paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from archiver.fake import FakeCall, FakeOSVI


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


async def get(
    http: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> Answer:
    async with http.get(url, headers=headers, params=params) as response:
        return Answer(response.status, response.headers, await response.read())


async def api_get(
    http: aiohttp.ClientSession,
    fake: FakeOSVI,
    path: str,
    params: Mapping[str, str] | None = None,
    *,
    token: str | None = "",
) -> Answer:
    """GET an API path with the fake's token ("" = the right one, None = no header at all)."""
    if token == "":
        token = fake.token
    headers = {} if token is None else {"API-Token": token}
    return await get(http, f"{fake.base_url}{path}", headers=headers, params=params)


async def recording_url(http: aiohttp.ClientSession, fake: FakeOSVI, call_id: str) -> str:
    answer = await api_get(http, fake, f"/v1/call/{call_id}/recording")
    assert answer.status == 200, answer.text
    url: str = answer.json()["data"]["recording_url"]
    return url


def recorded_calls(fake: FakeOSVI) -> list[FakeCall]:
    return [call for call in fake.calls if call.has_recording]


def full_body(fake: FakeOSVI, call: FakeCall) -> bytes:
    return fake.account.body(call).read(0, call.size)
