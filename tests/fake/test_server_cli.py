"""`osvi-archiver fake-server` as a real process, and the fake run in a thread for sync callers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest

from archiver.fake import FakeConfig, FaultKind, fake_in_thread
from tests.fake.fake_client import get
from tests.integration.cli_helpers import launch

TOKEN = "abcdefghijklmnop"
STARTUP_SECONDS = 10.0


@dataclass
class Server:
    process: asyncio.subprocess.Process
    base_url: str
    banner: list[str]

    async def api(
        self, http: aiohttp.ClientSession, path: str, token: str = TOKEN
    ) -> tuple[int, dict[str, object]]:
        answer = await get(http, f"{self.base_url}{path}", headers={"API-Token": token})
        body: dict[str, object] = answer.json()
        return answer.status, body

    async def stop(self, signum: signal.Signals) -> tuple[int, float, str]:
        """Send `signum`; (exit code, seconds to exit, the rest of stdout)."""
        began = time.monotonic()
        self.process.send_signal(signum)
        async with asyncio.timeout(5):
            rest, _ = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, time.monotonic() - began, rest.decode()


@asynccontextmanager
async def _fake_server(*args: str) -> AsyncIterator[Server]:
    """Start the command, wait for its banner, and make sure it is gone afterwards."""
    argv = ("fake-server", "--port", "0", "--calls", "50", "--token", TOKEN, *args)
    process = await launch(*argv, stdin=asyncio.subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        banner: list[str] = []
        async with asyncio.timeout(STARTUP_SECONDS):
            while not banner or not banner[-1].startswith("stop with"):
                line = await process.stdout.readline()
                assert line, f"fake-server exited early: {banner}"
                banner.append(line.decode().rstrip("\n"))
        base_url = next(line.split()[1] for line in banner if line.strip().startswith("base_url"))
        yield Server(process, base_url, banner)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def _run(*args: str) -> tuple[int, str, str]:
    """Run a command that ends by itself: (exit code, stdout, stderr)."""
    env = {"COLUMNS": "400"}  # no wrapping: a wrapped line can split a name
    process = await launch("fake-server", *args, env=env, stdin=asyncio.subprocess.DEVNULL)
    async with asyncio.timeout(STARTUP_SECONDS):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_fake_server_serves_the_four_endpoints_and_recordings_then_exits_0_on_sigterm(
    http: aiohttp.ClientSession,
) -> None:
    async with _fake_server() as server:
        assert f"  token           {TOKEN}" in server.banner
        status, listing = await server.api(http, "/v1/calls?per_page=100")
        assert status == 200
        assert listing["meta"] == {
            "current_page": 1,
            "total_pages": 1,
            "total_count": 50,
            "per_page": 100,
        }
        assert isinstance(listing["data"], list)
        call_id = next(item["call_id"] for item in listing["data"] if item["status"] == "picked")
        status, detail = await server.api(http, f"/v1/call/{call_id}")
        assert (status, detail["success"]) == (200, True)
        status, transcript = await server.api(http, f"/v1/call/{call_id}/transcript")
        assert (status, transcript["success"]) == (200, True)
        status, recording = await server.api(http, f"/v1/call/{call_id}/recording")
        assert status == 200
        assert isinstance(recording["data"], dict)
        url = recording["data"]["recording_url"]
        assert (await server.api(http, "/v1/calls", token="fake-token-0001x"))[0] == 401

        download = await get(http, url)
        assert download.status == 200
        assert download.headers["Content-Type"] == "audio/mp4"
        assert int(download.headers["Content-Length"]) == len(download.body) >= 64 * 1024
        md5 = hashlib.md5(download.body, usedforsecurity=False).hexdigest()
        assert download.headers["ETag"] == f'"{md5}"'
        leak = await get(http, url, headers={"API-Token": TOKEN})
        assert leak.status == 400

        stats = (await get(http, f"{server.base_url}/_fake/stats")).json()
        assert stats["leaks"] == 1
        assert stats["leak_details"][0]["header"] == "API-Token"
        assert stats["bytes_sent"] == len(download.body)
        assert stats["calls"][call_id]["downloads_complete"] == 1
        assert stats["requests"] == {
            "calls": 2,
            "call": 1,
            "transcript": 1,
            "recording": 1,
            "download": 2,
        }

        code, seconds, rest = await server.stop(signal.SIGTERM)
    assert code == 0
    assert seconds < 3.0
    assert "fake OSVI service stopped" in rest


async def test_fake_server_expires_urls_after_url_lifetime_and_exits_0_on_sigint(
    http: aiohttp.ClientSession,
) -> None:
    flags = ("--url-lifetime", "1", "--fault", "api-429=1", "--retry-after", "2")
    async with _fake_server(*flags) as server:
        path = "/v1/calls?status=picked"
        throttled = await get(http, server.base_url + path, headers={"API-Token": TOKEN})
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "2"
        status, listing = await server.api(http, path)
        assert status == 200
        assert isinstance(listing["data"], list)
        call_id = listing["data"][0]["call_id"]
        assert (await server.api(http, f"/v1/call/{call_id}/recording"))[0] == 429
        status, recording = await server.api(http, f"/v1/call/{call_id}/recording")
        assert status == 200
        assert isinstance(recording["data"], dict)
        assert recording["data"]["expires_in_seconds"] == 1
        url = recording["data"]["recording_url"]
        await asyncio.sleep(1.5)  # real time: the process runs on the real clock
        expired = await get(http, url)
        assert expired.status == 403
        assert "<Message>Request has expired</Message>" in expired.text
        stats = (await get(http, f"{server.base_url}/_fake/stats")).json()
        assert stats["expired_uses"] == 1
        assert stats["faults_fired"] == {"api-429": 2}

        code, seconds, rest = await server.stop(signal.SIGINT)
    assert code == 0
    assert seconds < 3.0
    assert "fake OSVI service stopped" in rest


async def test_fake_server_refuses_an_unknown_fault_kind_with_exit_2() -> None:
    code, out, err = await _run("--fault", "bogus=1")
    assert code == 2
    assert out == ""
    assert "argument --fault: fault 'bogus=1': unknown kind 'bogus'" in err
    assert "known: api-500, api-503, api-429" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--size-min", "10"), "error: need 64 <= size_min <= size_max"),
        (("--size-max", "huge"), "argument --size-max: not a size: 'huge'"),
        (("--all-faults", "3"), "fault rate must be within 0..1"),
    ],
    ids=["size-min", "size-max", "all-faults"],
)
async def test_fake_server_refuses_impossible_settings_with_exit_2(
    flags: tuple[str, ...], message: str
) -> None:
    code, _, err = await _run(*flags)
    assert code == 2
    assert message in err


async def test_fake_server_help_mentions_every_knob_and_fault_kind() -> None:
    code, out, _ = await _run("--help")
    assert code == 0
    flags = [
        "--host",
        "--port",
        "--recording-port",
        "--calls",
        "--seed",
        "--token",
        "--days",
        "--size-min",
        "--size-max",
        "--api-latency",
        "--download-latency",
        "--bandwidth",
        "--url-lifetime",
        "--retry-after",
        "--stall-seconds",
        "--pending-requests",
        "--ignore-range",
        "--no-content-type",
        "--multipart-etag",
        "--fault",
        "--all-faults",
    ]
    assert [flag for flag in flags if f"  {flag}" not in out] == []
    assert [k.value for k in FaultKind if k.value not in out] == []
    assert "SIGTERM" in out


def test_fake_in_thread_serves_synchronous_clients_and_stops_on_exit() -> None:
    with fake_in_thread(FakeConfig(calls=3)) as fake:
        request = urllib.request.Request(
            f"{fake.base_url}/v1/calls", headers={"API-Token": fake.token}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.load(response)
        base_url = fake.base_url
    assert body["meta"]["total_count"] == 3
    assert fake.stats.requests["calls"] == 1
    with pytest.raises(OSError, match="refused"):
        urllib.request.urlopen(f"{base_url}/v1/calls", timeout=5)
