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

from archiver.engine.check import CheckReport, check, render_text, window_of
from archiver.errors import UsageError
from archiver.fake import FakeOSVI, Fault, FaultKind
from archiver.osvi.listing import Filters
from archiver.osvi.times import Span
from archiver.state.database import State
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
    return await check(settings, filters, Span(since, until, datetime.now(UTC)), None)


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
    assert report.marks[0].watermark is not None
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
    assert document["watermarks"][0]["watermark"] is not None
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
    assert report.marks == []
    assert not tmp_path.joinpath(".osvi-archiver").exists()


def test_the_window_is_seven_days_to_now_unless_told_and_never_reversed() -> None:
    now = T + timedelta(days=7)
    assert window_of(Span(None, None, now)) == (T, now)
    assert window_of(Span(T, now + timedelta(days=1), now)) == (T, now)  # never past now
    with pytest.raises(UsageError, match="is after --until"):
        window_of(Span(T + timedelta(days=2), T + timedelta(days=1), now))
    with pytest.raises(UsageError, match="is after --until"):
        window_of(Span(now + timedelta(hours=1), None, now))  # --since in the future


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
    assert first.picked_at.endswith("Z")  # UTC, as every time of the report
    assert f"  {first.call_id}  pending since {first.picked_at}" in render_text(report)
    assert report.to_json()["pending"][0]["call_id"] == first.call_id


async def test_calls_after_the_watermark_are_the_next_syncs_until_they_are_old(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A call picked after the last sync is not missing while the next nightly may still
    take it; one that no sync took for 36 h is missing, whatever the watermark says (a
    nightly stuck before a window it cannot list must not make the check pass)."""
    fake = await make_fake(fake_config(40))
    now = datetime.now(UTC)
    since = now - timedelta(days=4)
    await synced(fake, tmp_path, since)
    fresh = [c for c in fake.add_calls(10) if c.status == "picked"]  # listed late: the overlap
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 0
    assert {c.call_id for c in report.later} == {c.call_id for c in fresh}
    assert report.missing == []
    assert "not synced yet    " in render_text(report)
    with State(tmp_path) as state:  # the nightly has been stuck for three days
        state.set_meta("sync_watermark", (now - timedelta(days=3)).isoformat())
    added = fake.add_calls(10, created_at=now - timedelta(hours=40))
    old = [c for c in added if c.status == "picked"]
    stuck = await checked(fake, tmp_path, since)
    assert stuck.exit_code == 1
    assert {m.call_id for m in stuck.missing} == {c.call_id for c in old}
    assert {c.call_id for c in stuck.later} == {c.call_id for c in fresh}


async def test_a_listing_the_check_cannot_walk_fails_the_check(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """The nightly cannot list a window (its watermark stops before it): the check walks the
    same listing, meets the same window, and exits 1, naming it."""
    fake = await make_fake(fake_config(100, list_ignore_page=True))
    now = datetime.now(UTC)
    burst = now - timedelta(hours=30)
    fake.add_calls(300, created_at=burst - timedelta(seconds=10), picked_at=burst)
    since = now - timedelta(days=2)
    assert (await sync(fake, tmp_path, since=since)).exit_code == 1
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 1
    assert len(report.gaps) == 1
    assert "could not list" in render_text(report)


async def test_calls_listed_in_another_window_than_their_stored_time_are_not_unlisted(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """A clock ahead (times shown an hour late): the stored time puts a call in another
    window than the one the API listed it in; listed anywhere, it is not unlisted."""
    fake = await make_fake(fake_config(300, days=2, time_shift=3600))
    since = datetime.now(UTC) - timedelta(days=3)
    await synced(fake, tmp_path, since)
    report = await checked(fake, tmp_path, since)
    assert report.exit_code == 0
    assert report.unlisted == []


async def test_a_failed_or_unfinished_check_still_says_its_exit_code_in_its_metrics(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(fake_config(5))
    metrics = tmp_path / "check.prom"
    env = {**env_for(fake), "OSVI_API_TOKEN": "x" * 16}
    done = await osvi("check", "--out", str(tmp_path), "--metrics-file", str(metrics), env=env)
    assert done.code == 3
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples["osvi_archiver_check_exit_code"] == 3
    assert "osvi_archiver_check_missing_calls" not in samples  # no count it does not know
