"""The state's meta keys in one place: what a state remembers besides its calls (the sync
watermarks, the last run and last success, the manifest's change number, the snapshot lineage
and a rebuild under way), and the readers of the watermarks.

A watermark is a claim about every call of one listing up to a moment (SPEC §2): the default
listing's (`sync_watermark`) is the archive's; a sync with any other filter set keeps one of
its own, keyed by its normalised filter set (the listing's parameters as JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from archiver.errors import LocalError
from archiver.redaction import shorten

WATERMARK_KEY = "sync_watermark"  # the default listing's watermark: the archive's
MANIFEST_CHANGE_KEY = "manifest_change"  # the change number the manifest is written to
LAST_SUCCESS_KEY = "last_success_at"  # epoch seconds of the last run that exited 0
LAST_RUN_KEY = "last_run"  # the last run's id, times, exit code and counts (JSON)
SNAPSHOT_KEY = "snapshot_id"  # a bucket's: the snapshot this state descends from
GENERATION_KEY = "snapshot_generation"  # a bucket's, before snapshot ids: a number
REBUILD_KEY = "rebuild_after"  # a bucket's: the listing's last key a rebuild under way did
WAITING_KEY = "rebuild_waiting"  # a bucket's: the sidecars a rebuild holds for a recording
DESTINATION_ID = "destination_id"  # a bucket's: the id of the destination this state is of


class Metas(Protocol):
    """What the readers here need of a state."""

    def get_meta(self, key: str) -> str | None: ...
    def metas(self, prefix: str) -> dict[str, str]: ...


def filtered_watermark_key(params: Mapping[str, Any]) -> str:
    """The key of the watermark of a listing with these (non-default) parameters."""
    return f"{WATERMARK_KEY} {json.dumps(params, sort_keys=True)}"


def watermark_params(key: str) -> dict[str, Any] | None:
    """The listing parameters of a filtered watermark's key; None: not one."""
    prefix = f"{WATERMARK_KEY} "
    try:
        params = json.loads(key[len(prefix) :]) if key.startswith(prefix) else None
    except ValueError:
        return None
    return params if isinstance(params, dict) else None


def other_watermarks(state: Metas) -> dict[str, datetime]:
    """The watermarks of the syncs with other filter sets than the default, by their listing
    parameters (`watermark_params`) as JSON; keys that are no filter set's left out, a value
    that is no moment a LocalError."""
    found: dict[str, datetime] = {}
    for key, value in state.metas(f"{WATERMARK_KEY} ").items():
        params, mark = watermark_params(key), _moment(key, value)
        if params is not None and mark is not None:
            found[key] = mark
    return found


def watermark_at(state: Metas, key: str) -> datetime | None:
    """The watermark the state holds under `key`; LocalError when it is not a moment."""
    return _moment(key, state.get_meta(key))


def _moment(key: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
        moment.astimezone(UTC)  # a moment that exists: +14:00 on 0001-01-01 does not
    except (ValueError, OverflowError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise LocalError(
            f"the state's sync watermark {key!r} holds {shorten(value, 80)!r}, not a moment "
            "with a UTC offset (the state was edited or damaged): a sync of that listing "
            "with --since DATE (a date up to which the archive is complete) sets it anew"
        )
    return moment
