"""Running the archiver in-process against the fake, and checking what it left on disk."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema

from archiver.archive.names import manifest_name
from archiver.config.settings import Settings, load_settings
from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.engine.input_feed import run_input
from archiver.engine.inputs import read_ids
from archiver.engine.lifecycle import execute
from archiver.engine.outputs import RunResult
from archiver.fake import FakeOSVI
from archiver.manifest.export import export
from archiver.manifest.writer import load_schema
from archiver.monitoring.counts import NoProgress


async def quick_sleep(seconds: float) -> None:
    """Backoff without the wait: tests stay fast, the order of events is unchanged."""
    await asyncio.sleep(min(seconds, 0.01))


def picked_ids(fake: FakeOSVI) -> list[str]:
    return [c.call_id for c in fake.calls if c.has_recording]


def settings_for(fake: FakeOSVI, out_dir: Path, token: str | None = None, **flags: Any) -> Settings:
    """Settings pointing at the fake, with a high API rate cap unless a test sets one."""
    return load_settings(
        {"base_url": fake.base_url, "out_dir": out_dir, "max_requests_per_second": 1000, **flags},
        config_path=None,
        environ={"OSVI_API_TOKEN": token or fake.token},
    )


async def archive(
    fake: FakeOSVI,
    out_dir: Path,
    ids: Iterable[str] | None = None,
    *,
    text: str | None = None,
    force: bool = False,
    sleep: Any = quick_sleep,
    token: str | None = None,
    retry_not_available: bool = False,
    **flags: Any,
) -> RunResult:
    """`osvi-archiver run` in-process: ids (default: every call of the fake) as CSV input."""
    settings = settings_for(fake, out_dir, token, **flags)
    if text is None:
        chosen = list(ids) if ids is not None else [c.call_id for c in fake.calls]
        text = "call_id\n" + "".join(f"{i}\n" for i in chosen)
    items = read_ids(io.BytesIO(text.encode()), "<test>")
    options = RunOptions(
        force=force, retry_not_available=retry_not_available, clocks=Clocks(sleep=sleep)
    )
    return await execute(settings, run_input(items), NoProgress(), options)


def manifest_of(out_dir: Path, shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """The whole manifest as `osvi-archiver manifest --format json` prints it (the shape of
    a schema-1 manifest.json), its index and every part validated against the shipped schema
    on the way."""
    index_path = out_dir / manifest_name(shard)
    index = json.loads(index_path.read_text())
    jsonschema.Draft202012Validator(load_schema("index")).validate(index)
    for listed in index["parts"]:
        body = (out_dir / listed["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == listed["sha256"], listed["path"]
        jsonschema.Draft202012Validator(load_schema("part")).validate(json.loads(body))
    out = io.StringIO()
    export(out_dir, shard, "json", out)
    manifest: dict[str, Any] = json.loads(out.getvalue())
    jsonschema.Draft202012Validator(load_schema("export")).validate(manifest)
    assert len(manifest["calls"]) == index["total"]
    return manifest


def statuses(out_dir: Path) -> dict[str, str]:
    return {c["call_id"]: c["status"] for c in manifest_of(out_dir)["calls"]}


def assert_byte_exact(
    fake: FakeOSVI, out_dir: Path, ids: Iterable[str], shard: tuple[int, int] | None = None
) -> None:
    """Each call is archived, its file hashes to the fake's bytes, and nothing half-written."""
    calls = {c["call_id"]: c for c in manifest_of(out_dir, shard)["calls"]}
    for call_id in ids:
        entry = calls[call_id]
        assert entry["status"] == "archived", entry
        data = (out_dir / entry["path"]).read_bytes()
        expected = fake.account.expected_sha256(call_id)
        assert hashlib.sha256(data).hexdigest() == expected == entry["sha256"]
        assert len(data) == entry["bytes"]
    assert list(out_dir.rglob("*.part")) == []
