"""`--shard K/N`: which calls a run takes, and how a shard's own files are named.

A shard is `(K, N)`. Its spellings, each made here only: `K/N` (the flag, the metrics label,
messages), `shard-K-of-N` (its state folder), `.shard-K-of-N` (inserted before the extension
of its manifest, reports and `.part` files).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from archiver.errors import UsageError

Shard = tuple[int, int]  # (K, N) of --shard K/N
_FLAG = re.compile(r"(\d+)/(\d+)", re.A)
_LABEL = re.compile(r"shard-(\d+)-of-(\d+)", re.A)
MARK = ".shard-"  # in the name of every file a shard owns (and of no whole run's)
LABEL_PATTERN = r"shard-\d+-of-\d+"
INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")


def shard_index(canonical: str, count: int) -> int:
    """The shard of a canonical (lower-case) call id among `count`:
    int.from_bytes(sha256(id)[:8], "big") % count, the same on every machine and version."""
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(canonical: str, shard: Shard | None) -> bool:
    """Whether a run of `shard` (None: the whole archive) takes this call."""
    return shard is None or shard_index(canonical, shard[1]) == shard[0]


def parse_shard(text: str) -> Shard:
    match = _FLAG.fullmatch(text.strip())
    if match is not None:
        index, count = int(match[1]), int(match[2])
        if index < count:
            return index, count
    raise UsageError(f"--shard must be K/N with 0 <= K < N, e.g. 0/4; got {text!r}")


def resolve_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """`K/N`, or `auto/N` taking K from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or an
    AWS Batch array job (AWS_BATCH_JOB_ARRAY_INDEX)."""
    head, sep, count = text.strip().partition("/")
    if head != "auto" or not sep:
        return parse_shard(text)
    for name in INDEX_VARIABLES:
        if environ.get(name, "").strip():
            return parse_shard(f"{environ[name].strip()}/{count}")
    raise UsageError(f"--shard {text}: neither {' nor '.join(INDEX_VARIABLES)} is set")


def shard_text(shard: Shard | None) -> str:
    """`K/N`, as the flag and the metrics spell it; '' for a whole run."""
    return f"{shard[0]}/{shard[1]}" if shard else ""


def shard_label(shard: Shard | None) -> str:
    """`shard-K-of-N`, the name a shard's own files carry in a shared archive folder (its
    state and lock folder, manifest, run reports and `.part` files); '' for a whole run."""
    return f"shard-{shard[0]}-of-{shard[1]}" if shard else ""


def shard_suffix(shard: Shard | None) -> str:
    """`.shard-K-of-N`, inserted before the extension of a shard's own file names (manifest,
    reports, `.part` files); '' for a whole run."""
    return f".{shard_label(shard)}" if shard else ""


def from_label(name: str) -> Shard | None:
    """The shard a `shard-K-of-N` name stands for, or None."""
    match = _LABEL.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None
