"""The shard of any spelling of a call id, for tests that split ids as a run would."""

from __future__ import annotations

from archiver.archive.ids import canonical_uuid
from archiver.archive.shard import shard_index


def shard_of(call_id: str, count: int) -> int:
    canonical = canonical_uuid(call_id)
    assert canonical is not None, call_id
    return shard_index(canonical, count)
