"""An API or host that cannot be reached (issue 11, findings 17 and 22 to 26): the run stops
with exit 69 soon and says why, rides out a short outage without failing calls, and never
hammers a proxy that refuses its credentials. Loopback only: closed ports, a silent port, a
relay taken down, an injected resolver, a test CA."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from archiver.engine.assembly import RunOptions, Wiring
from archiver.engine.clocks import Clocks
from archiver.engine.outputs import RunResult
from archiver.fake import FakeConfig, FakeOSVI
from tests.clocks import SteppedClock
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import assert_byte_exact, manifest_of, picked_ids
from tests.integration.cli_helpers import osvi
from tests.integration.wire_helpers import (
    NamesResolver,
    Relay,
    closed_port,
    proxy_asking_credentials,
    run_ids,
    settings_at,
    silent_port,
    tls_for,
)

TOKEN = "fake-token-0001x"


def small(calls: int = 8) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8192, size_max=16384)


def ids(count: int = 8) -> list[str]:
    return picked_ids(FakeOSVI(small(count)))


def clocked(
    resolver: Any = None, ssl_context: ssl.SSLContext | None = None
) -> tuple[SteppedClock, RunOptions]:
    clock = SteppedClock()
    clocks = Clocks(monotonic=clock, sleep=clock.sleep)
    wiring = Wiring(resolver=resolver, ssl_context=ssl_context)
    return clock, RunOptions(clocks=clocks, wiring=wiring)


def existing(out: Path) -> Path:
    """An archive that exists already (its state): a run on a new one first has the API
    accept its token, and ends at once, creating nothing, on an answer no retry would change
    (test_a_new_archive_is_not_created_when_the_first_answer_is_final)."""
    from archiver.state.database import State

    out.mkdir(parents=True, exist_ok=True)
    with State(out):
        pass
    return out


def assert_said(result: RunResult, code: int, out: Path) -> None:
    """The exit code, the run report and the manifest tell the same story."""
    assert result.exit_code == code, result.error
    [report] = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert report["exit_code"] == code
    assert list(out.rglob("*.part")) == []


# no answer at all


async def test_a_closed_port_stops_the_run_within_a_minute_with_exit_69(tmp_path: Path) -> None:
    clock, options = clocked()
    base = f"http://127.0.0.1:{closed_port()}"
    began = clock()
    result = await run_ids(settings_at(base, tmp_path, TOKEN), ids(), options)
    assert_said(result, 69, tmp_path)
    assert clock() - began <= 60.5  # (the rate cap adds its milliseconds)
    message = str(result.error)
    assert base in message
    assert "never answered" in message
    assert "Connect call failed" in message or "Connection refused" in message
    assert result.counts.failed == 0  # no call was marked failed for it


async def test_a_port_that_never_answers_stops_the_run_too(tmp_path: Path) -> None:
    _, options = clocked()
    async with silent_port() as port:
        settings = settings_at(f"http://127.0.0.1:{port}", tmp_path, TOKEN, read_timeout=0.2)
        started = time.monotonic()
        result = await run_ids(settings, ids(2), options)
    assert_said(result, 69, tmp_path)
    assert "no data within read_timeout" in str(result.error)
    assert time.monotonic() - started < 20


async def test_a_mistyped_host_stops_at_once_without_a_real_lookup(tmp_path: Path) -> None:
    clock, options = clocked(resolver=NamesResolver())
    settings = settings_at(
        "http://api.osvi.tset:8080", existing(tmp_path), TOKEN, allow_insecure_urls=True
    )
    began = clock()
    result = await run_ids(settings, ids(), options)
    assert_said(result, 69, tmp_path)
    assert clock() - began < 0.1  # no wait (but the rate cap's milliseconds)
    assert "api.osvi.tset" in str(result.error)
    assert "host name" in str(result.error)
    assert options.wiring.resolver.asked == ["api.osvi.tset"] * len(options.wiring.resolver.asked)


# an outage after answers


async def test_a_short_outage_fails_no_call_and_a_long_one_ends_the_run(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The API goes away for 20 s (connections refused: errors that come back at once) in the
    middle of a run with max_attempts 2: no call burns its attempts; every call is archived.
    Then an outage longer than max_outage stops a run with 69, and a rerun completes."""
    fake = await make_fake(FakeConfig(calls=30, size_min=8192, size_max=16384))
    relay = Relay(int(fake.base_url.rsplit(":", 1)[1]))
    await relay.start()
    base = f"http://127.0.0.1:{relay.port}"
    clock, options = clocked()
    settings = settings_at(base, tmp_path, fake.token, max_attempts=2, concurrency=2)

    answered = 0
    original = fake.account.stats.record

    def count_and_cut(endpoint: str, status: int, call_id: str | None = None) -> None:
        nonlocal answered
        original(endpoint, status, call_id)
        answered += 1
        if answered == 10:  # mid-run: the network goes, for 20 s of the run's clock
            relay.down()
            clock.at(20.0, relay.up)

    fake.account.stats.record = count_and_cut  # type: ignore[method-assign]
    result = await run_ids(settings, picked_ids(fake), options)
    assert_said(result, 0, tmp_path)
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    # Tries during the outage cost nothing: some calls made more than max_attempts of them.
    assert max(c["attempts"] for c in manifest_of(tmp_path)["calls"]) > 2

    fake.account.stats.record = original  # type: ignore[method-assign]
    longer = tmp_path / "second"
    relay.down()
    settings = settings_at(base, longer, fake.token, max_outage="30s")
    result = await run_ids(settings, picked_ids(fake), options)
    assert result.exit_code == 69
    assert "could not be reached" in str(result.error)
    relay.up()
    rerun = await run_ids(settings, picked_ids(fake), RunOptions())
    assert rerun.exit_code == 0
    assert_byte_exact(fake, longer, picked_ids(fake))
    relay.stop()


# TLS


async def test_an_untrusted_certificate_stops_at_once_and_says_why(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    tls = tls_for(tmp_path, "localhost")
    fake = await make_fake(small(), ssl_context=tls.server, url_host="localhost")
    clock, options = clocked()  # the system's CAs: the test CA is not among them
    began = clock()
    out = existing(tmp_path / "out")
    result = await run_ids(settings_at(fake.base_url, out, fake.token), ids(), options)
    assert_said(result, 69, out)
    assert clock() - began < 0.1  # at once (but the rate cap's milliseconds)
    message = str(result.error)
    assert "certificate verify failed" in message
    assert "SSL_CERT_FILE" in message
    assert fake.stats.requests == {}  # nothing got through


async def test_a_certificate_for_another_name_is_refused_naming_the_mismatch(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    tls = tls_for(tmp_path, "other.example")
    fake = await make_fake(small(), ssl_context=tls.server, url_host="localhost")
    _, options = clocked(ssl_context=tls.client)
    out = existing(tmp_path / "out")
    result = await run_ids(settings_at(fake.base_url, out, fake.token), ids(), options)
    assert result.exit_code == 69
    assert "match" in str(result.error).lower()


async def test_a_trusted_certificate_archives_everything(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    tls = tls_for(tmp_path, "localhost")
    fake = await make_fake(small(), ssl_context=tls.server, url_host="localhost")
    result = await run_ids(
        settings_at(fake.base_url, tmp_path, fake.token),
        picked_ids(fake),
        RunOptions(wiring=Wiring(ssl_context=tls.client)),
    )
    assert result.exit_code == 0
    assert_byte_exact(fake, tmp_path, picked_ids(fake))


async def test_a_corporate_ca_is_trusted_through_ssl_cert_file(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """What the README says to do behind a TLS-inspecting proxy, done by a real process."""
    tls = tls_for(tmp_path, "localhost")
    fake = await make_fake(small(), ssl_context=tls.server, url_host="localhost")
    env = {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token}
    stdin = "\n".join(picked_ids(fake)).encode()
    refused = await osvi("run", "--out", str(tmp_path / "a"), env=env, stdin=stdin)
    assert refused.code == 69, refused.stderr
    assert "certificate verify failed" in refused.stderr
    trusted = await osvi(
        "run",
        "--out",
        str(tmp_path / "b"),
        env={**env, "SSL_CERT_FILE": str(tls.ca_file)},
        stdin=stdin,
    )
    assert trusted.code == 0, trusted.stderr


async def test_a_recording_url_at_this_machine_is_refused_when_the_api_is_remote(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A compromised API (here: one that is not on loopback, by name) must not make the tool
    fetch local services over plain http."""
    tls = tls_for(tmp_path, "api.osvi.test")
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    config = small()
    config.recording_urls = {bad: "http://127.0.0.1:9/admin"}
    fake = await make_fake(config, ssl_context=tls.server, url_host="api.osvi.test")
    options = RunOptions(
        wiring=Wiring(resolver=NamesResolver("api.osvi.test"), ssl_context=tls.client)
    )
    result = await run_ids(
        settings_at(fake.base_url, tmp_path, fake.token), picked_ids(fake), options
    )
    entries = {c["call_id"]: c for c in manifest_of(tmp_path)["calls"]}
    assert entries[bad]["error"]["kind"] == "unsafe_url"
    assert "points at this machine" in entries[bad]["error"]["message"]
    assert result.exit_code == 1
    assert_byte_exact(fake, tmp_path, [c for c in picked_ids(fake) if c != bad])


# proxies


async def test_a_proxy_refusing_our_credentials_stops_the_run_after_one_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_asking_credentials() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://corp%5Cme:s3cr3t-pw@127.0.0.1:{port}")
        monkeypatch.delenv("http_proxy", raising=False)
        settings = settings_at(
            "http://api.osvi.test:8080",
            existing(tmp_path),
            TOKEN,
            allow_insecure_urls=True,
            concurrency=1,
        )
        options = RunOptions(wiring=Wiring(resolver=NamesResolver("api.osvi.test")))
        result = await run_ids(settings, ids(), options)
    assert_said(result, 69, tmp_path)
    assert len(seen) == 1  # not retried: a directory account would lock
    assert "407" in str(result.error)
    assert "s3cr3t" not in str(result.error)
    sent = base64.b64encode(b"corp\\me:s3cr3t-pw")
    assert b"Proxy-Authorization: Basic " + sent in seen[0]
    assert seen[0].startswith(b"GET http://api.osvi.test:8080/v1/call/")


async def test_no_proxy_names_hosts_reached_directly(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = await make_fake(small())
    port = fake.base_url.rsplit(":", 1)[1]
    async with proxy_asking_credentials() as (proxy_port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.setenv("NO_PROXY", "example.org,api.osvi.test")
        settings = settings_at(
            f"http://api.osvi.test:{port}", tmp_path, fake.token, allow_insecure_urls=True
        )
        options = RunOptions(wiring=Wiring(resolver=NamesResolver("api.osvi.test")))
        result = await run_ids(settings, picked_ids(fake), options)
    assert result.exit_code == 0
    assert seen == []


async def test_a_proxy_that_is_down_stops_the_run_not_each_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    settings = settings_at("http://api.osvi.test:8080", tmp_path, TOKEN, allow_insecure_urls=True)
    _clock, options = clocked(resolver=NamesResolver("api.osvi.test"))
    result = await run_ids(settings, ids(), options)
    assert_said(result, 69, tmp_path)
    assert result.counts.failed == 0


@pytest.mark.skipif(sys.platform != "linux", reason="proxy variables as on Linux")
async def test_an_https_proxy_url_is_a_clear_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archiver.errors import UsageError

    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example:3128")
    with pytest.raises(UsageError, match="HTTPS_PROXY"):  # a new archive: before anything
        await run_ids(settings_at("http://127.0.0.1:9", tmp_path / "new", TOKEN), ids(2))
    assert not (tmp_path / "new").exists()
    result = await run_ids(settings_at("http://127.0.0.1:9", existing(tmp_path), TOKEN), ids(2))
    assert result.exit_code == 2
    assert "HTTPS_PROXY" in str(result.error)
    assert "http://" in str(result.error)


async def test_an_api_that_never_finishes_an_answer_is_bounded_by_api_timeout(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=4, api_latency=5.0))
    _, options = clocked()
    settings = settings_at(fake.base_url, tmp_path, fake.token, api_timeout="0.2s")
    started = time.monotonic()
    result = await run_ids(settings, ids(4), options)
    assert_said(result, 69, tmp_path)
    assert "no answer within api_timeout (0.2 s)" in str(result.error)
    assert time.monotonic() - started < 20


# a recording host: one call's, or everyone's


async def test_one_calls_recording_host_that_does_not_resolve_fails_that_call_only(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    probe = FakeOSVI(small())
    bad = picked_ids(probe)[0]
    config = small()
    config.recording_urls = {bad: "https://nowhere.invalid/x.mp4"}
    fake = await make_fake(config)
    options = RunOptions(
        clocks=Clocks(sleep=SteppedClock().sleep), wiring=Wiring(resolver=NamesResolver())
    )
    settings = settings_at(fake.base_url, tmp_path, fake.token, max_attempts=2)
    result = await run_ids(settings, picked_ids(fake), options)
    assert result.exit_code == 1, result.error
    entries = {c["call_id"]: c for c in manifest_of(tmp_path)["calls"]}
    assert entries[bad]["error"]["kind"] == "connection"
    assert_byte_exact(fake, tmp_path, [c for c in picked_ids(fake) if c != bad])


async def test_a_recording_host_every_call_needs_that_does_not_resolve_stops_the_run(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    config = small()
    config.recording_urls = {c: "https://s3.nowhere.invalid/x.mp4" for c in ids()}
    fake = await make_fake(config)
    options = RunOptions(
        clocks=Clocks(sleep=SteppedClock().sleep), wiring=Wiring(resolver=NamesResolver())
    )
    result = await run_ids(settings_at(fake.base_url, tmp_path, fake.token), ids(), options)
    assert_said(result, 69, tmp_path)
    assert "s3.nowhere.invalid" in str(result.error)


@contextlib.asynccontextmanager
async def proxy_answering_connect(status: bytes) -> AsyncIterator[int]:
    """An HTTP proxy that answers every CONNECT with `status` (a 502: it cannot reach the host)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_proxy_that_cannot_reach_the_api_is_an_outage_not_failed_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_answering_connect(b"502 Bad Gateway") as port:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        _clock, options = clocked(resolver=NamesResolver("api.osvi.test"))
        result = await run_ids(
            settings_at("https://api.osvi.test", tmp_path, TOKEN), ids(), options
        )
    assert_said(result, 69, tmp_path)
    assert "the proxy could not reach it (502" in str(result.error)
    assert result.counts.failed == 0


async def test_a_new_archive_is_not_created_when_the_first_answer_is_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run checks its token with one listing item before it creates the archive; an
    answer no retry would change ends it there, exit 69, with nothing created: a host name
    that does not exist, a proxy refusing our login (asked once: a directory account would
    lock). An API that only does not answer is the run's to wait for (the outage tests)."""
    from archiver.errors import Unavailable

    _, options = clocked(resolver=NamesResolver())
    out = tmp_path / "mistyped"
    settings = settings_at("http://api.osvi.tset:8080", out, TOKEN, allow_insecure_urls=True)
    with pytest.raises(Unavailable, match="host name"):
        await run_ids(settings, ids(), options)
    assert not out.exists()
    async with proxy_asking_credentials() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://corp%5Cme:s3cr3t-pw@127.0.0.1:{port}")
        monkeypatch.delenv("http_proxy", raising=False)
        out = tmp_path / "proxied"
        settings = settings_at("http://api.osvi.test:8080", out, TOKEN, allow_insecure_urls=True)
        options = RunOptions(wiring=Wiring(resolver=NamesResolver("api.osvi.test")))
        with pytest.raises(Unavailable, match="407") as caught:
            await run_ids(settings, ids(), options)
    assert len(seen) == 1
    assert seen[0].startswith(b"GET http://api.osvi.test:8080/v1/calls?")
    assert "s3cr3t" not in str(caught.value)
    assert not out.exists()


async def test_a_new_archive_behind_an_api_that_does_not_answer_is_the_runs_outage(
    tmp_path: Path,
) -> None:
    """No answer to the token's check is not final: the run goes on, creates the archive,
    waits for the outage as any run does, and says it (exit 69, in its report)."""
    _, options = clocked()
    result = await run_ids(settings_at(f"http://127.0.0.1:{closed_port()}", tmp_path, TOKEN),
                           ids(), options)  # fmt: skip
    assert_said(result, 69, tmp_path)
    assert "never answered" in str(result.error)
