"""Where an archive lives, behind one seam: the interface, the local folder, its lock and verify;
`store/` for buckets. `open_destination` picks one from the settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from archiver.archive.shard import shard_label
from archiver.destinations.base import Destination
from archiver.destinations.folder import LocalFolder

if TYPE_CHECKING:
    from archiver.archive.shard import Shard
    from archiver.config.settings import Settings

log = logging.getLogger("archiver.destinations")


def open_destination(settings: Settings) -> Destination:
    """The destination `out_dir` names. A store's client is built here (its library is
    imported only then), from the store settings and the standard credential chains."""
    if settings.in_store:
        from archiver.destinations.store.bucket import StoreDestination

        return StoreDestination.from_settings(settings)
    given = [name for name in STORE_ONLY if getattr(settings, name)]
    if given:
        log.warning("%s set but out_dir is a folder (%s): ignored", ", ".join(given),
                    settings.folder, extra={"event": "store_settings_ignored"})  # fmt: skip
    return LocalFolder(settings.folder)


# The settings that mean something for a bucket only.
STORE_ONLY = ("store_endpoint", "store_region", "store_sse", "store_sse_kms_key_id",
              "store_storage_class")  # fmt: skip


def warn_other_sharding(destination: Destination, shard: Shard | None) -> None:
    """Shards of one N share a folder without overlap; a run split another way (or not at
    all) has its own state, so it does not know what those archived and downloads it again."""
    ways = shard[1] if shard else 1
    states = destination.states()
    if destination.rebuilds and shard not in states:
        return  # a bucket's first state is rebuilt from the objects: nothing is fetched twice
    others = [s for s in states if (s[1] if s else 1) != ways]
    if others:
        names = ", ".join(shard_label(s) or "the unsharded state" for s in others[:4])
        more = f" and {len(others) - 4} more" if len(others) > 4 else ""
        log.warning(
            "this archive also holds runs split another way (%s%s): this run does not see "
            "what they archived and downloads such calls again",
            names,
            more,
            extra={"event": "other_sharding"},
        )
