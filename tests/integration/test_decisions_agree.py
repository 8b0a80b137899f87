"""The dry run says what the run does: both ask decide.decide, and on a mixed archive (archived,
archived but missing, pending, failed, not available, a duplicate, other shards) the calls the
dry run would download are exactly those the run then attempts, with or without --force,
--retry-failed and --shard."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from archiver.archive.shard import parse_shard
from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import read_ids
from archiver.engine.lifecycle import execute
from archiver.fake import FakeConfig
from archiver.monitoring.counts import NoProgress
from archiver.state.call_records import CallRecord
from archiver.state.database import State
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import archive, picked_ids, quick_sleep, settings_for
from tests.integration.cli_helpers import osvi


def _mixed_archive(out: Path, ids: list[str]) -> None:
    """ids[0..1] and [6..7] archived, [2] archived but its file gone, [3] pending, [4] failed,
    [5] not available; the others never seen."""
    with State(out) as state:
        state.claim_block(ids[3:6], "seeding")
        state.record(CallRecord(ids[3], "pending", attempts=1, run_id="seeding",
                                error_kind="pending"))  # fmt: skip
        state.record(CallRecord(ids[4], "failed", attempts=6, run_id="seeding",
                                error_kind="http_500", error_message="HTTP 500"))  # fmt: skip
        state.record(CallRecord(ids[5], "not_available", attempts=1, run_id="seeding",
                                error_kind="not_available"))  # fmt: skip
        state.commit()
        gone = state.get(ids[2])
    assert gone is not None
    assert gone.path is not None
    (out / gone.path).unlink()


def _said(stdout: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split("\t")) for line in stdout.splitlines() if line]  # type: ignore[misc]


@pytest.mark.parametrize(
    "flags",
    [(), ("--force",), ("--retry-failed",), ("--shard", "1/2"), ("--force", "--shard", "0/2")],
)
async def test_the_dry_run_and_the_run_agree_on_every_call(
    make_fake: FakeFactory, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    fake = await make_fake(FakeConfig(calls=16, size_min=2048, size_max=4096))
    ids = picked_ids(fake)[:10]
    out = tmp_path / "archive"
    first = await archive(fake, out, [*ids[:3], *ids[6:8]])
    assert first.exit_code == 0
    _mixed_archive(out, ids)
    retry_failed = "--retry-failed" in flags
    rows = [] if retry_failed else [*ids, ids[0], ids[3], "not-a-uuid"]
    text = "call_id\n" + "".join(f"{r}\n" for r in rows)
    env = {"OSVI_BASE_URL": fake.base_url}
    dry = await osvi("run", "--dry-run", "--out", str(out), *flags, env=env, stdin=text.encode())
    assert dry.code in (0, 1), dry.stderr
    said = _said(dry.stdout)

    shard = parse_shard(flags[flags.index("--shard") + 1]) if "--shard" in flags else None
    settings = settings_for(fake, out)
    items = read_ids(io.BytesIO(text.encode()), "<stdin>")
    options = RunOptions(force="--force" in flags, shard=shard, clocks=Clocks(sleep=quick_sleep))
    source = run_input(items, retry_failed=retry_failed)
    result = await execute(settings, source, NoProgress(), options)
    with State(out, readonly=True, shard=shard) as state:
        attempted = {r.call_id for r in state.run_outcomes(result.run_id)}

    downloads = [call_id for action, call_id, _ in said if action == "download"]
    assert sorted(downloads) == sorted(attempted)
    assert len(downloads) == len(set(downloads))  # each call downloaded once
    skipped = [reason for action, _, reason in said if action == "skip"]
    counts = result.counts
    assert skipped.count("already archived") == counts.already_archived
    assert skipped.count("not available before (final)") == counts.already_not_available
    assert skipped.count("duplicate in the input") == counts.duplicates
    assert sum(1 for action, *_ in said if action == "invalid") == counts.invalid_rows
    others = re.search(r"other shards +([\d,]+)", dry.stderr)
    assert (int(others[1]) if others else 0) == counts.other_shards
    assert dry.code == (1 if counts.invalid_rows else 0)
    if not flags:  # the mixed archive shows each reason once
        reasons = {call_id: reason for _, call_id, reason in said}
        assert reasons[ids[2]] == "archived, but its file is missing or changed"
        assert reasons[ids[3]] == "pending: asked again"
        assert reasons[ids[4]] == "failed before (http_500)"
        assert reasons[ids[5]] == "not available before (final)"  # not asked again
        assert reasons[ids[8]] == "new"
