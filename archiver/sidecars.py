"""A recording's sidecars (§5.5): the call's detail and its transcript, saved as JSON beside
it, each through a registered `.part` like the recording itself.

An answer is parsed only in its turn (api.OsviApi.parsing), and encoded and written a batch
at a time while it is held: a detail of MiBs of small objects takes hundreds of MB once
parsed (its indented text, several times its size), and a run's memory must stay bounded
whatever the API sends. Parsed on the event loop, as every answer is: in worker threads,
each thread's malloc arena kept what the parses had freed (RSS 580 MB against 410 MB for
8 MiB details at concurrency 16).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from archiver.answers import JsonAnswer
from archiver.destination import Stored
from archiver.names import METADATA_SUFFIX, TRANSCRIPT_SUFFIX, part_path
from archiver.records import CallRecord
from archiver.storage import PartFile, remove_quietly

if TYPE_CHECKING:
    from archiver.api import OsviApi
    from archiver.archive import CallPolicy

Getter = Callable[[str], Awaitable[JsonAnswer | None]]
Fetch = Callable[[str, Getter, str], Awaitable[JsonAnswer]]
_PIECES = 1 << 16  # pieces of the JSON encoder (keys, values, punctuation) per write


async def add_sidecars(
    record: CallRecord,
    detail: JsonAnswer | None,
    policy: CallPolicy,
    fetch: Fetch,
    api: OsviApi,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> CallRecord:
    """§5.5: `<stem>.call.json` and `<stem>.transcript.json` beside the recording, each
    written atomically (`detail`: the call's, when it was fetched already). If one cannot be
    had, the call is failed (its recording stays on disk and is downloaded again by the next
    run), so nothing claims more than it has."""
    assert record.path is not None
    stem = PurePosixPath(record.path).with_suffix("")
    saved: dict[str, str] = {}
    wanted = (
        ("metadata_path", policy.with_metadata, METADATA_SUFFIX, api.detail, "call"),
        ("transcript_path", policy.with_transcript, TRANSCRIPT_SUFFIX, api.transcript,
         "transcript"),
    )  # fmt: skip
    for key, enabled, suffix, get, what in wanted:
        if not enabled:
            continue
        answer = detail if key == "metadata_path" and detail else None
        answer = answer or await fetch(record.call_id, get, what)
        relative = f"{stem}{suffix}"
        await _save_json(policy, api, record.call_id, relative, answer, on_part)
        saved[key] = relative
    return dataclasses.replace(
        record,
        metadata_path=saved.get("metadata_path"),
        transcript_path=saved.get("transcript_path"),
    )


async def _save_json(
    policy: CallPolicy,
    api: OsviApi,
    call_id: str,
    relative: str,
    answer: JsonAnswer,
    on_part: Callable[[str, str], Awaitable[None]] | None,
) -> None:
    """A sidecar, written as recordings are: through a `.part` registered before it exists
    (so that a crash leaves nothing the next run does not remove), then renamed."""
    part = part_path(Path(relative), policy.shard)
    if on_part is not None:
        await on_part(call_id, part.as_posix())
    root = policy.destination.root
    kind = "metadata" if relative.endswith(METADATA_SUFFIX) else "transcript"
    handle = await PartFile.create(root / part, policy.file_mode)
    try:
        digest = hashlib.sha256()
        async with api.parsing(answer):
            for chunk in _encoded(answer):  # the parsed answer lives only in here
                await handle.write(chunk, None, digest.update)
        stored = Stored(call_id, digest.hexdigest(), handle.size, "application/json", kind)
        await policy.destination.publish(handle, relative, stored)
    except BaseException:
        await handle.close()
        await remove_quietly(handle.path)
        raise


def _encoded(answer: JsonAnswer) -> Iterator[bytes]:
    """The answer's data as the sidecar holds it (indented JSON, a line break at the end),
    _PIECES pieces of the encoder at a time; ApiBadResponse when the answer is not one."""
    pieces = json.JSONEncoder(indent=2).iterencode(answer.data())
    while batch := "".join(itertools.islice(pieces, _PIECES)):
        yield batch.encode()
    yield b"\n"
