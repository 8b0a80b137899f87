"""`osvi-archiver status`: counts, watermark, last run, pending calls, read-only and cheap."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver.fake import FakeConfig, Fault, FaultKind
from tests.conftest import FakeFactory
from tests.integration.cli_helpers import env_for, osvi


async def test_status_shows_counts_watermark_last_run_and_pending_calls(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    config = FakeConfig(calls=20, days=2, size_min=4096, size_max=8192, pending_requests=99,
                        faults={FaultKind.PENDING: Fault(rate=0.3)})  # fmt: skip
    fake = await make_fake(config)
    since = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")
    env = env_for(fake)
    synced = await osvi("sync", "--since", since, "--out", str(tmp_path), env=env)
    assert synced.code == 0, synced.stderr
    report = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    db = tmp_path / ".osvi-archiver" / "state.sqlite3"
    state_before = (db.read_bytes(), db.stat().st_mtime_ns)

    shown = await osvi("status", "--json", "--out", str(tmp_path), env={})
    assert shown.code == 0, shown.stderr
    [state] = json.loads(shown.stdout)["states"]
    assert state["counts"]["archived"] == report["counts"]["archived"]
    assert state["counts"]["pending"] == report["counts"]["pending"] > 0
    assert state["pending"]["count"] == report["counts"]["pending"]
    assert all(call["last_tried"] for call in state["pending"]["calls"])
    assert state["sync_watermark"] is not None
    assert state["last_run"]["run_id"] == report["run_id"]
    assert state["last_run"]["exit_code"] == 0
    assert state["last_success_at"] is not None

    text = await osvi("status", "--out", str(tmp_path), env={})
    assert f"last run          sync {report['run_id']}" in text.stdout
    assert "pending           " in text.stdout
    # Read only: the state is as it was (SQLite's readers may open its -wal/-shm beside it).
    assert (db.read_bytes(), db.stat().st_mtime_ns) == state_before


async def test_status_of_an_empty_folder_says_there_is_nothing_yet(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    shown = await osvi("status", "--out", str(tmp_path / "none"), env={})
    assert shown.code == 0, shown.stderr
    assert "nothing was archived here" in shown.stdout


async def test_status_of_a_missing_folder_is_an_error_and_bad_meta_is_unreadable(
    tmp_path: Path,
) -> None:
    missing = await osvi("status", "--out", str(tmp_path / "typo" / "deep"), env={})
    assert missing.code == 4
    assert "not a folder" in missing.stderr
    from archiver.state.database import State

    with State(tmp_path / "a") as state:
        state.set_meta("last_run", "{")
        state.set_meta("last_success_at", "nan")
    shown = await osvi("status", "--json", "--out", str(tmp_path / "a"), env={})
    assert shown.code == 0, shown.stderr
    [one] = json.loads(shown.stdout)["states"]
    assert one["last_run"] is None
    assert one["last_success_at"] is None
