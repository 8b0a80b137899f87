"""A recording's sidecars (§5.5): the call's detail and its transcript, saved as JSON beside
it, each through a registered `.part` like the recording itself."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from archiver.destination import Stored
from archiver.names import METADATA_SUFFIX, TRANSCRIPT_SUFFIX, part_path
from archiver.records import CallRecord
from archiver.storage import PartFile, remove_quietly

if TYPE_CHECKING:
    from archiver.api import OsviApi
    from archiver.archive import CallPolicy

Getter = Callable[[str], Awaitable[dict[str, Any] | None]]
Fetch = Callable[[str, Getter, str], Awaitable[dict[str, Any]]]


async def add_sidecars(
    record: CallRecord,
    detail: dict[str, Any] | None,
    policy: CallPolicy,
    fetch: Fetch,
    api: OsviApi,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> CallRecord:
    """§5.5: `<stem>.call.json` and `<stem>.transcript.json` beside the recording, each
    written atomically. If one cannot be had, the call is failed (its recording stays on
    disk and is downloaded again by the next run), so nothing claims more than it has."""
    assert record.path is not None
    stem = PurePosixPath(record.path).with_suffix("")
    saved: dict[str, str] = {}
    wanted = (
        ("metadata_path", policy.with_metadata, METADATA_SUFFIX, api.call, "call"),
        ("transcript_path", policy.with_transcript, TRANSCRIPT_SUFFIX, api.transcript,
         "transcript"),
    )  # fmt: skip
    for key, enabled, suffix, get, what in wanted:
        if not enabled:
            continue
        data = detail if key == "metadata_path" and detail else None
        data = data or await fetch(record.call_id, get, what)
        relative = f"{stem}{suffix}"
        await _save_json(policy, record.call_id, relative, data, on_part)
        saved[key] = relative
    return dataclasses.replace(
        record,
        metadata_path=saved.get("metadata_path"),
        transcript_path=saved.get("transcript_path"),
    )


async def _save_json(
    policy: CallPolicy,
    call_id: str,
    relative: str,
    data: Any,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> None:
    """A sidecar, written as recordings are: through a `.part` registered before it exists
    (so that a crash leaves nothing the next run does not remove), then renamed."""
    part = part_path(Path(relative), policy.shard)
    if on_part is not None:
        await on_part(call_id, part.as_posix())
    body = json.dumps(data, indent=2).encode() + b"\n"
    root = policy.destination.root
    kind = "metadata" if relative.endswith(METADATA_SUFFIX) else "transcript"
    stored = Stored(call_id, hashlib.sha256(body).hexdigest(), len(body), "application/json", kind)
    handle = await PartFile.create(root / part, policy.file_mode)
    try:
        await handle.write(body, len(body))
        await policy.destination.publish(handle, relative, stored)
    except BaseException:
        await handle.close()
        await remove_quietly(handle.path)
        raise
