"""The archive's format, pure: the names the tool gives, the layout template, shards, call ids,
outcomes, and the local file primitives (`.part` files, atomic writes, fsync)."""
