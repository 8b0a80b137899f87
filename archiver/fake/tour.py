"""A short guided tour of the fake service, shown by `osvi-archiver demo` until archiving lands.

It talks to the fake exactly as the archiver will: list calls with the token, ask for one
recording's presigned URL, then download it from the recording host with no credentials.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from archiver.fake.config import FakeConfig
from archiver.fake.server import FakeOSVI


async def tour(calls: int = 12) -> None:
    async with FakeOSVI(FakeConfig(calls=calls)) as fake:
        print(f"Started the fake OSVI service at {fake.base_url} ({calls} calls).")
        headers = {"API-Token": fake.token}
        async with aiohttp.ClientSession(headers=headers) as api:
            listing = await _get_json(api, f"{fake.base_url}/v1/calls?per_page=5")
            print(f"GET /v1/calls -> {listing['meta']['total_count']} calls; newest five:")
            for item in listing["data"]:
                print(f"  {item['call_id']}  {item['status']:<11} {item['call_picked_at']}")
            picked = next(c for c in fake.calls if c.has_recording)
            url_body = await _get_json(api, f"{fake.base_url}/v1/call/{picked.call_id}/recording")
        url = url_body["data"]["recording_url"]
        shown = urlsplit(url)._replace(query="").geturl()  # the query is a credential
        print(f"GET /v1/call/{picked.call_id}/recording -> {shown}?<signature hidden>")
        print(f"  expires_in_seconds = {url_body['data']['expires_in_seconds']}")
        async with aiohttp.ClientSession() as downloads, downloads.get(url) as response:
            body = await response.read()
        print(
            f"Downloaded {len(body)} bytes ({response.headers.get('Content-Type')}), "
            f"sha256 {hashlib.sha256(body).hexdigest()[:16]}..., starts with {body[4:8]!r}."
        )
        print(f"Leaks seen by the recording host: {len(fake.stats.leaks)}.")
        print("Next: `osvi-archiver fake-server --help` to run it in the foreground.")


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
        response.raise_for_status()
        body: dict[str, Any] = await response.json()
        return body
