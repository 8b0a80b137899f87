"""`osvi-archiver check`: the archive reconciled with the API's listing (issue 20), on a folder
against the fake on loopback: a clean archive, a call never seen, a failed call, an archived
call the listing does not show, the repair pipe, the outputs and the exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.check import CheckReport, check, default_window, render_text
from archiver.fake import FakeOSVI, Fault, FaultKind
from archiver.listing import Filters
from archiver.state import State
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import settings_for
from tests.integration.cli_helpers import env_for, osvi
from tests.integration.test_sync import fake_config, picked_between, sync

PICKED = Filters(status=("picked",))
T = datetime(2026, 6, 1, tzinfo=UTC)


async def checked(
    fake: FakeOSVI, out: Path | str, since: datetime, until: datetime | None = None,
    filters: Filters = PICKED, **flags: Any,
) -> CheckReport:  # fmt: skip
    settings = settings_for(fake, out, **flags)  # type: ignore[arg-type]
    return await check(settings, filters, (since, until, datetime.now(UTC)), None)


async def synced(fake: FakeOSVI, out: Path, since: datetime) -> None:
    result = await sync(fake, out, since=since)
    assert result.exit_code in (0, 1), result.error


async def test_a_clean_archive_checks_complete(make_fake: FakeFactory, tmp_path: Path) -> None:
    fake = await make_fake(fake_config(200))
    since = datetime.now(UTC) - timedelta(days=2)
    await synced(fake, tmp_path, since)
    downloads = dict(fake.stats.requests)
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 0
    expected = picked_between(fake, since, report.end)
    assert report.listed == len(expected)
    assert report.outcomes["archived"] == len(expected)
    assert report.missing == []
    assert report.unlisted == []
    assert report.until_from == "the sync watermark"
    assert report.covered
    assert "result            complete" in render_text(report)
    asked = {k: v - downloads.get(k, 0) for k, v in fake.stats.requests.items()}
    assert {k for k, v in asked.items() if v} == {"calls"}  # the listing only: no URL asked
    with State(tmp_path) as state:  # nothing written: no run recorded, no lock taken
        assert state.get_meta("last_run") is not None


async def test_a_call_never_seen_and_a_failed_call_are_missing_with_why(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(60))
    now = datetime.now(UTC)
    since = now - timedelta(days=3)
    picked = sorted(picked_between(fake, since, now))
    broken = picked[0]
    fake.config.faults = {FaultKind.NOT_AUDIO: Fault(calls=frozenset([broken]), times=None)}
    await synced(fake, tmp_path, since)
    added = fake.add_calls(12, created_at=now - timedelta(days=1))
    late = {c.call_id for c in added if c.status == "picked"}
    assert late
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 1
    why = {m.call_id: m for m in report.missing}
    assert set(why) == {broken} | late
    assert why[broken].why == "failed"
    assert why[broken].kind == "not_audio"
    assert {why[i].why for i in late} == {"never_seen"}
    assert all(why[i].picked_at for i in late)
    assert report.outcomes["failed"] == 1
    assert report.outcomes["never_seen"] == len(late)
    text = render_text(report)
    assert f"  {broken}  failed (not_audio)" in text
    assert f"  {next(iter(late))}  never seen" in text
    assert f"NOT complete: {len(late) + 1} missing" in text


async def test_archived_calls_the_listing_does_not_show_are_unlisted_not_missing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """Voicemails archived by a sync of their own are in the window but not in the default
    listing (status picked): reported as unlisted, which is no error."""
    fake = await make_fake(fake_config(200))
    since = datetime.now(UTC) - timedelta(days=2)
    await synced(fake, tmp_path, since)
    voicemail = await sync(fake, tmp_path, since=since, filters=Filters(status=("voicemail",)))
    assert voicemail.counts.archived > 0
    report = await checked(fake, tmp_path, since, until=datetime.now(UTC))
    assert report.exit_code == 0
    assert report.unlisted is not None
    assert len(report.unlisted) == voicemail.counts.archived
    assert "unlisted          " in render_text(report)
    inbound = Filters(status=("picked",), call_type="inbound")
    filtered = await checked(fake, tmp_path, since, filters=inbound)
    assert filtered.unlisted is None
    assert "filtered by more than --status" in (filtered.unlisted_note or "")


async def test_check_ids_piped_into_run_repairs_the_archive(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(40))
    now = datetime.now(UTC)
    await synced(fake, tmp_path, now - timedelta(days=3))
    added = fake.add_calls(10, created_at=now - timedelta(days=1))
    missing = {c.call_id for c in added if c.status == "picked"}
    assert missing
    env = env_for(fake, OSVI_MAX_REQUESTS_PER_SECOND="500")
    found = await osvi("check", "--out", str(tmp_path), "--since", "3d", "--ids", env=env)
    assert found.code == 1, found.stderr
    assert set(found.stdout.split()) == missing
    repaired = await osvi("run", "--out", str(tmp_path), "-", env=env,
                          stdin=found.stdout.encode())  # fmt: skip
    assert repaired.code == 0, repaired.stderr
    again = await osvi("check", "--out", str(tmp_path), "--since", "3d", "--json", env=env)
    assert again.code == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["missing"] == []
    assert document["exit_code"] == 0
    assert document["listed"] == document["outcomes"]["archived"]
    assert document["window"]["until"] == "the sync watermark"


async def test_check_json_and_metrics_say_what_is_missing(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(30))
    now = datetime.now(UTC)
    await synced(fake, tmp_path / "a", now - timedelta(days=4))
    added = fake.add_calls(10, created_at=now - timedelta(days=1))
    late = next(c for c in added if c.status == "picked")
    metrics = tmp_path / "check.prom"
    env = env_for(fake, OSVI_MAX_REQUESTS_PER_SECOND="500")
    done = await osvi("check", "--out", str(tmp_path / "a"), "--since", "4d", "--until", "now",
                      "--json", "--metrics-file", str(metrics), env=env)  # fmt: skip
    assert done.code == 1
    document = json.loads(done.stdout)
    assert late.call_id in [m["call_id"] for m in document["missing"]]
    assert document["window"]["until"] == "--until"
    assert document["watermarks"][0]["covers_window"] is False
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples["osvi_archiver_check_missing_calls"] == len(document["missing"])
    assert samples["osvi_archiver_check_exit_code"] == 1
    assert samples["osvi_archiver_check_listed_calls"] == document["listed"]


async def test_check_exit_codes_for_usage_token_and_place(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(5))
    env = env_for(fake)
    usage = await osvi("check", "--out", str(tmp_path), "--status", "nope", env=env)
    assert usage.code == 2
    token = await osvi("check", "--out", str(tmp_path), env={**env, "OSVI_API_TOKEN": "x" * 16})
    assert token.code == 3
    nowhere = await osvi("check", "--out", str(tmp_path / "missing"), env=env)
    assert nowhere.code == 4
    assert "no archive there" in nowhere.stderr
    both = await osvi("check", "--out", str(tmp_path), "--ids", "--json", env=env)
    assert both.code == 2
    assert fake.stats.requests["recording"] == 0


async def test_an_archive_with_no_state_misses_every_listed_call(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(30))
    since = datetime.now(UTC) - timedelta(days=4)
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 1
    assert report.listed == len(report.missing) > 0
    assert report.until_from == "now"
    assert not tmp_path.joinpath(".osvi-archiver").exists()


@pytest.mark.parametrize(
    ("marks", "until", "expected"),
    [
        ([], None, (T + timedelta(days=7), "now")),
        ([T + timedelta(days=5)], None, (T + timedelta(days=5), "the sync watermark")),
        ([T + timedelta(days=5), None], None, (T + timedelta(days=7), "now")),
        ([T - timedelta(days=1)], None, (T + timedelta(days=7), "now")),  # before --since
        ([T + timedelta(days=5)], T + timedelta(days=6), (T + timedelta(days=6), "--until")),
    ],
)
def test_the_window_ends_at_the_watermark_unless_told(
    marks: list[datetime | None], until: datetime | None, expected: tuple[datetime, str]
) -> None:
    now = T + timedelta(days=7)
    start, end, source = default_window(marks, T, until, now)
    assert start == T
    assert (end, source) == expected
    assert default_window([], None, None, now)[0] == now - timedelta(days=7)


async def test_pending_calls_are_held_and_shown_with_since_when(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    faults = {FaultKind.PENDING: Fault(rate=0.5)}
    fake = await make_fake(fake_config(40, days=1, pending_requests=99, faults=faults))
    since = datetime.now(UTC) - timedelta(days=2)
    await synced(fake, tmp_path, since)
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 0
    assert report.missing == []
    assert report.pending
    assert report.outcomes["pending"] == len(report.pending)
    first = report.pending[0]
    assert first.picked_at is not None
    assert f"  {first.call_id}  pending since {first.picked_at}" in render_text(report)
    assert report.to_json()["pending"][0]["call_id"] == first.call_id
