"""A broken or hostile API and recording host (issue 11): every bad answer is that call's
outcome with a kind of its own, and never a crash, a hang, a leak or a filled disk."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.fake.config import OMIT
from archiver.osvi import api as api_module
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import (
    archive,
    assert_byte_exact,
    manifest_of,
    picked_ids,
    quick_sleep,
)
from tests.integration.cli_helpers import clean_environ, env_for
from tests.integration.test_sync import sync


def small(calls: int = 8, **more: Any) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8192, size_max=16384, **more)


def entries(out: Path) -> dict[str, dict[str, Any]]:
    return {c["call_id"]: c for c in manifest_of(out)["calls"]}


async def fake_detail(fake: FakeOSVI, call_id: str) -> Any:
    """What the fake answers to GET /v1/call/{id}, as a client sees it."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{fake.base_url}/v1/call/{call_id}", headers={"API-Token": fake.token}) as got,
    ):
        return json.loads(await got.read())


def report_of(out: Path) -> dict[str, Any]:
    [path] = sorted((out / "runs").glob("*.json"))[-1:]
    report: dict[str, Any] = json.loads(path.read_text())
    return report


async def one_bad_call(
    make_fake: FakeFactory, tmp_path: Path, knob: str, value: object, **flags: Any
) -> tuple[FakeOSVI, str, dict[str, Any]]:
    """A fake whose first picked call gets `knob` = value; the run over all its calls; the bad
    call's manifest entry. Every other call is checked archived, byte for byte."""
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    config = small()
    setattr(config, knob, {bad: value})
    fake = await make_fake(config)
    result = await archive(fake, tmp_path, **flags)
    good = [c for c in picked_ids(fake) if c != bad]
    assert_byte_exact(fake, tmp_path, good)
    entry = entries(tmp_path)[bad]
    if entry["status"] == "failed":
        assert result.exit_code == 1
        assert report_of(tmp_path)["exit_code"] == 1
    return fake, bad, entry


# URLs the API hands out


@pytest.mark.parametrize(
    "url",
    [
        "https://a..b/x.mp4",
        "https://xn--/x.mp4",
        "https://[::1/x.mp4",
        "https://h:99999/x.mp4",
        "ftp://{origin}/x.mp4",
        "not a url at all",
        "https://user:pw@s3.example.com/x.mp4",
        "http://198.51.100.7/x.mp4?X-Amz-Signature=s3cr3t",
    ],
)
async def test_an_unusable_recording_url_fails_its_call_and_nothing_else(
    make_fake: FakeFactory, tmp_path: Path, url: str
) -> None:
    fake, _, entry = await one_bad_call(make_fake, tmp_path, "recording_urls", url)
    assert entry["status"] == "failed"
    assert entry["error"]["kind"] == "unsafe_url"
    assert "s3cr3t" not in json.dumps(manifest_of(tmp_path))
    assert fake.stats.requests["download"] == len(picked_ids(fake)) - 1  # never fetched


# redirects of the recording host


async def test_a_redirect_to_plain_http_elsewhere_is_refused_before_any_byte(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, bad, entry = await one_bad_call(
        make_fake, tmp_path, "redirects", "http://198.51.100.7/steal.mp4"
    )
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "unsafe_url")
    assert "redirect" in entry["error"]["message"] or "plain-http" in entry["error"]["message"]
    assert fake.stats.calls[bad].downloads_complete == 0


async def test_a_redirect_that_passes_the_rules_is_followed(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, bad, entry = await one_bad_call(make_fake, tmp_path, "redirects", "{signed}")
    assert entry["status"] == "archived"
    assert_byte_exact(fake, tmp_path, [bad])
    assert fake.stats.calls[bad].statuses["download:302"] == 1


async def test_an_endless_chain_of_redirects_is_cut_short(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake, bad, entry = await one_bad_call(
        make_fake, tmp_path, "redirects", "{again}", max_attempts=2
    )
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "recording_refused")
    assert "redirects" in entry["error"]["message"]
    assert fake.stats.calls[bad].statuses["download:302"] == 4  # 1 + 3 hops, one attempt


# expires_in_seconds


@pytest.mark.parametrize("value", [math.nan, OMIT, None, "soon", 10**15, "900"])
async def test_a_lifetime_that_says_nothing_usable_is_used_at_once(
    make_fake: FakeFactory, tmp_path: Path, value: object
) -> None:
    _, _, entry = await one_bad_call(make_fake, tmp_path, "expires_in", value)
    assert entry["status"] == "archived"


@pytest.mark.parametrize("value", [0, -30])
async def test_a_url_expired_on_arrival_is_never_fetched(
    make_fake: FakeFactory, tmp_path: Path, value: int
) -> None:
    fake, bad, entry = await one_bad_call(make_fake, tmp_path, "expires_in", value, max_attempts=3)
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "url_expired")
    assert fake.stats.calls[bad].requests["download"] == 0
    assert fake.stats.calls[bad].requests["recording"] == 3  # a fresh URL asked each time


# bodies


async def test_a_body_slower_than_min_speed_is_given_up_as_too_slow(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A host that trickles never trips read_timeout: the speed floor stops it."""
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    faults = {FaultKind.TRICKLE: Fault(calls=frozenset({bad}), times=None)}
    fake = await make_fake(small(faults=faults, trickle_rate=4096))
    result = await archive(fake, tmp_path, max_attempts=2, min_speed="1MiB", min_speed_time="0.3s")
    entry = entries(tmp_path)[bad]
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "too_slow")
    assert "below min_speed" in entry["error"]["message"]
    assert result.exit_code == 1
    assert_byte_exact(fake, tmp_path, [c for c in picked_ids(fake) if c != bad])


async def test_an_endless_body_stops_at_max_recording_size(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    faults = {FaultKind.ENDLESS: Fault(calls=frozenset({bad}), times=None)}
    fake = await make_fake(small(faults=faults))
    await archive(fake, tmp_path, max_recording_size="1MiB")
    entry = entries(tmp_path)[bad]
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "too_large")
    assert list(tmp_path.rglob("*.part")) == []
    assert fake.stats.calls[bad].requests["download"] == 1  # permanent: not retried
    assert fake.stats.calls[bad].bytes_sent < 8 << 20  # the tool stopped reading


async def test_a_recording_announced_over_max_recording_size_is_not_read(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=4, size_min=100_000, size_max=120_000))
    result = await archive(fake, tmp_path, max_recording_size="64KiB")
    assert result.exit_code == 1
    for call_id in picked_ids(fake):
        assert entries(tmp_path)[call_id]["error"]["kind"] == "too_large"
    assert not list(tmp_path.rglob("*.mp4"))


async def test_downloads_ask_for_the_bytes_as_stored(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A host that gzips for a client that accepts it would make every call `not_audio`."""
    faults = {FaultKind.GZIP: Fault(rate=1.0, times=None)}
    fake = await make_fake(small(faults=faults))
    result = await archive(fake, tmp_path)
    assert result.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert gzip  # the fake answers gzip only to `Accept-Encoding: gzip`, which is not sent


# what the API sends back


async def test_an_api_answer_over_the_cap_fails_the_call_not_the_memory(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    faults = {FaultKind.API_HUGE: Fault(calls=frozenset({bad}), times=None)}
    fake = await make_fake(small(faults=faults, huge_body=64 << 20))
    result = await archive(fake, tmp_path)
    entry = entries(tmp_path)[bad]
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "api_bad_response")
    assert result.exit_code == 1


async def test_an_api_error_echoing_the_token_never_shows_it_nor_its_escapes(
    make_fake: FakeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    faults = {FaultKind.API_ECHO: Fault(calls=frozenset({bad}), times=None)}
    token = "Zq9xK2mW7pLr4Tn8"
    fake = await make_fake(small(faults=faults, token=token))
    with caplog.at_level(logging.INFO, logger="archiver"):
        await archive(fake, tmp_path)
    entry = entries(tmp_path)[bad]
    assert (entry["status"], entry["error"]["kind"]) == ("failed", "api_rejected")
    shown = json.dumps(manifest_of(tmp_path)) + json.dumps(report_of(tmp_path)) + caplog.text
    assert not any(token[i : i + 4] in shown for i in range(len(token) - 3))
    assert "\x1b" not in caplog.text
    assert "\x1b" not in entry["error"]["message"]
    assert "\\x1b[31m" in entry["error"]["message"]


# fields the API may send as null


async def test_a_listed_call_without_agent_or_date_is_archived_under_unknown(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """sync's listing gives the layout's fields; a call without them is still archived."""
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    nulls = {bad: frozenset({"agent_uuid", "call_picked_at", "created_at"})}
    fake = await make_fake(small(null_fields=nulls))
    since = datetime.now(UTC) - timedelta(days=30)
    result = await sync(fake, tmp_path, since, layout="{agent_uuid}/{yyyy}/{call_id}{ext}")
    assert result.exit_code == 0, result.error
    entry = entries(tmp_path)[bad]
    assert entry["status"] == "archived"
    assert entry["path"] == f"unknown/unknown/{bad}.mp4"
    assert (tmp_path / entry["path"]).is_file()


async def test_a_call_whose_metadata_has_no_date_is_archived_under_unknown(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    _fake, bad, entry = await one_bad_call(
        make_fake,
        tmp_path,
        "null_fields",
        frozenset({"call_picked_at", "created_at"}),
        layout="{yyyy}/{mm}/{call_id}{ext}",
        with_metadata=True,
    )
    assert entry["status"] == "archived"
    assert entry["path"] == f"unknown/unknown/{bad}.mp4"
    assert entry["metadata_path"] == f"unknown/unknown/{bad}.call.json"


async def test_retried_calls_of_a_dated_layout_learn_their_date_from_the_call(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A pending call that sync retries first has no listing item: it asks the call's
    metadata for its date (it used to stop the run with exit 2)."""
    faults = {FaultKind.PENDING: Fault(rate=1.0)}
    fake = await make_fake(small(faults=faults, pending_requests=1, days=1))
    since = datetime.now(UTC) - timedelta(days=2)
    layout = "{yyyy}/{mm}/{call_id}{ext}"
    first = await sync(fake, tmp_path, since, layout=layout)
    assert first.counts.pending
    assert first.exit_code == 0
    again = await sync(fake, tmp_path, since, layout=layout)
    assert again.exit_code == 0, again.error
    for call_id in (c.call_id for c in fake.calls if c.status == "picked"):
        entry = entries(tmp_path)[call_id]
        assert entry["status"] == "archived", entry
        assert not entry["path"].startswith("unknown/")
        assert fake.stats.calls[call_id].requests["call"] == 1  # asked once, when retried


# credentials: netrc, and nothing to the recording host


async def test_netrc_credentials_never_reach_any_host(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fake = await make_fake(small())
    result = await archive(fake, tmp_path / "out", sleep=quick_sleep)
    assert result.exit_code == 0
    assert fake.stats.leaks == []


async def test_loopback_is_never_sent_through_a_proxy(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a corporate proxy the fake must stay reachable, and the token must not travel
    to the proxy in clear text."""
    from tests.integration.wire_helpers import closed_port

    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    fake = await make_fake(small())
    result = await archive(fake, tmp_path)
    assert result.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_listed_items_whose_call_id_is_no_uuid_are_invalid_rows_of_the_listing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A number, a list or a path as call_id once crashed the sync: now each is an invalid
    row (the run exits 1), never used, and every other call is archived."""
    probe = [c for c in FakeOSVI(small(12, days=1)).calls if c.status == "picked"]
    junk: dict[str, object] = {probe[0].call_id: 12345, probe[1].call_id: ["x"]}
    junk[probe[2].call_id] = "../../etc/passwd"
    fake = await make_fake(small(12, days=1, listed_ids=junk))
    result = await sync(fake, tmp_path, datetime.now(UTC) - timedelta(days=2))
    assert result.exit_code == 1
    assert result.counts.invalid_rows == 3
    rows = report_of(tmp_path)["invalid_rows"]
    assert {row["source"] for row in rows} == {"<listing>"}
    assert {row["value"] for row in rows} == {"12345", "['x']", "'../../etc/passwd'"}
    good = [c.call_id for c in probe[3:]]
    assert_byte_exact(fake, tmp_path, good)
    assert not (tmp_path / "etc").exists()


DETAIL = 512 << 10  # a large answer here, where LARGE_ANSWER is 256 KiB (1 MiB in a run)


async def test_large_call_details_are_parsed_one_at_a_time_and_saved_as_they_came(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7.6 MiB details with --with-metadata at concurrency 16 took RSS to 2.6 GB: each call
    held its detail parsed (many times its size) through its download, and while its
    sidecar was written. A detail is kept as it came and parsed in its turn, one large one
    at a time; its sidecar is byte for byte what it was (indented JSON)."""
    fake = await make_fake(
        FakeConfig(calls=8, size_min=32 << 10, size_max=32 << 10, bandwidth=64 << 10,
                   detail_padding=DETAIL)
    )  # fmt: skip
    ids = picked_ids(fake)[:4]
    monkeypatch.setattr(api_module, "LARGE_ANSWER", 256 << 10, raising=False)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        result = await archive(fake, tmp_path, ids, with_metadata=True, concurrency=4,
                               layout="{yyyy}/{call_id}{ext}")  # fmt: skip
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.error
    for call_id in ids:
        [sidecar] = tmp_path.rglob(f"{call_id}.call.json")
        body = await fake_detail(fake, call_id)
        assert sidecar.read_bytes() == (json.dumps(body["data"], indent=2) + "\n").encode()
    # Four held parsed through their downloads took 34 times one detail; one at a time, 17.
    assert peak < 24 * DETAIL


# Runs the archiver as its only child, then says the child's peak RSS on stderr.
_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "archiver", *sys.argv[1:]])
print("peak_rss_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_details_just_under_the_8_mib_cap_at_concurrency_16_stay_under_512_mib(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The shipped Job's pod limit is 512 MiB: a run stays under it whatever the API sends
    (before: about 920 MB here, 2.6 GB in the field)."""
    fake = await make_fake(
        FakeConfig(calls=24, size_min=32 << 10, size_max=64 << 10, detail_padding=7600 << 10)
    )
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(picked_ids(fake)[:16]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PEAK_RSS, "run", "--out", str(tmp_path / "out"),
        "--with-metadata", "--concurrency", "16", "--max-rps", "1000", str(ids),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=clean_environ(**env_for(fake)),
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode == 0, err.decode()
    peak = int(err.decode().rsplit("peak_rss_kib", 1)[1].split()[0]) << 10
    assert peak < 512 << 20, f"peak RSS {peak >> 20} MiB"
