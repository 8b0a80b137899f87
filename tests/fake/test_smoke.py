from __future__ import annotations

import aiohttp

from archiver.fake import FakeOSVI


async def test_recording_url_downloads_the_calls_bytes(
    fake: FakeOSVI, http: aiohttp.ClientSession
) -> None:
    call = next(c for c in fake.calls if c.has_recording)
    headers = {"API-Token": fake.token}
    url = f"{fake.base_url}/v1/call/{call.call_id}/recording"
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        data = (await response.json())["data"]
    async with http.get(data["recording_url"]) as response:
        body = await response.read()
    assert len(body) == call.size
    assert body[4:8] == b"ftyp"
    assert fake.stats.leaks == []
