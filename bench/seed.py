"""Archives of millions of calls for the benchmarks, written straight into the state.

A real run of ten million calls takes days; what the scale scenarios measure (a nightly into
a large archive, a rerun, memory) depends only on the state's rows, the manifest's catalog and,
for the skip path, a file per archived call. So the state module's own connection is filled
with archived calls in a few bulk statements, the manifest is then written once by the tool's
own writer (as the runs that archived them would have left it), and, where asked, a file of a
few bytes is made per call. Not a product path: bench only.
"""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from pathlib import Path

from archiver.manifest.writer import write_manifest
from archiver.state.database import State

CHUNK = 50_000
BODY = b"seed"
SHA = hashlib.sha256(BODY).hexdigest()


def seeded_ids(count: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    return sorted(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count))


def seed(
    out: Path,
    count: int,
    *,
    files: bool = False,
    manifest: bool = True,
    ids: list[str] | None = None,
) -> list[str]:
    """`count` archived calls in a new archive at `out` (sorted ids, seq in that order), or
    these `ids`; its manifest written unless `manifest` is false (the next run then writes
    every part)."""
    ids = sorted(ids) if ids is not None else seeded_ids(count)
    count = len(ids)
    with State(out) as state:
        db = state._db
        for start in range(0, count, CHUNK):
            rows = [
                (call_id, "archived", f"{call_id}.mp4", len(BODY), SHA, "audio/mp4",
                 "2026-01-01T00:00:00.000000Z", 1, "seed", start + n, 1)
                for n, call_id in enumerate(ids[start : start + CHUNK])
            ]  # fmt: skip
            db.executemany(
                "INSERT INTO calls (call_id, status, path, bytes, sha256, content_type, "
                "archived_at, attempts, run_id, seq, changed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.commit()
        if manifest:
            write_manifest(state, out, 0o600)
    if files:
        for call_id in ids:
            fd = os.open(out / f"{call_id}.mp4", os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, BODY)
            os.close(fd)
    return ids
