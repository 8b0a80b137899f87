"""Every name the tool gives in an archive folder, made here only (verify reads them too).

<archive>/
  <recordings, laid out by `layout`>  <stem><ext>, beside it <stem>.call.json and
                                      <stem>.transcript.json (--with-metadata/-transcript)
  <file>.part, <file>.shard-K-of-N.part   a download in flight
  manifest.json, manifest/part-NNNNNN.json   the manifest's index and parts
  runs/<run_id>.json                  the run reports (pruned by name: only these)
  .osvi-archiver/state.sqlite3, lock  the state and the lock of the whole archive
  .osvi-archiver/shard-K-of-N/...     those of a shard, whose own files carry
                                      `.shard-K-of-N` before their extension
  .<name>.<random>.tmp                an atomic write in flight (storage.write_atomic)
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from archiver.archive.shard import LABEL_PATTERN, Shard, from_label, shard_label, shard_suffix

STATE_DIR = ".osvi-archiver"
STATE_FILE = "state.sqlite3"
LOCK_FILE = "lock"
MANIFEST_NAME = "manifest.json"
PARTS_DIR = "manifest"
RUNS_DIR = "runs"
PART_SUFFIX = ".part"
METADATA_SUFFIX = ".call.json"
TRANSCRIPT_SUFFIX = ".transcript.json"
SIDECAR_SUFFIXES = (METADATA_SUFFIX, TRANSCRIPT_SUFFIX)
TEMP_SUFFIX = ".tmp"
_TOP_LEVEL = frozenset({STATE_DIR, MANIFEST_NAME, PARTS_DIR, RUNS_DIR})
_SHARD_MANIFEST = re.compile(rf"manifest\.{LABEL_PATTERN}(\.json)?")  # its index, its parts
# A run id (run.new_run_id): its start, UTC to the millisecond, then a random tail.
RUN_ID_PATTERN = r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}"
_REPORT = re.compile(rf"{RUN_ID_PATTERN}(\.{LABEL_PATTERN})?\.json", re.ASCII)
# The folders the tool writes into: never used through a symbolic link (LocalFolder.prepare).
OWN_FOLDERS = (RUNS_DIR, PARTS_DIR)


def state_folder(out_dir: Path, shard: Shard | None) -> Path:
    """`.osvi-archiver/` for a whole run, `.osvi-archiver/shard-K-of-N/` for a shard: N shards
    sharing one folder never touch each other's state or lock."""
    return out_dir / STATE_DIR / shard_label(shard) if shard else out_dir / STATE_DIR


def manifest_name(shard: Shard | None) -> str:
    """`manifest.json`; a shard's is `manifest.shard-K-of-N.json` (the calls it archived)."""
    return f"manifest{shard_suffix(shard)}.json"


def parts_dir(shard: Shard | None) -> str:
    """`manifest/`; a shard's parts are in `manifest.shard-K-of-N/`."""
    return f"{PARTS_DIR}{shard_suffix(shard)}"


def part_name(part: int, shard: Shard | None) -> str:
    return f"{parts_dir(shard)}/part-{part:06d}.json"


def part_number(relative: str, shard: Shard | None) -> int | None:
    """N of `manifest/part-NNNNNN.json` (a shard's: in `manifest.shard-K-of-N/`), the name of
    a part of this index; None for any other name (an index naming anything else, such as
    an absolute path, is not one the tool wrote)."""
    prefix = f"{parts_dir(shard)}/part-"
    number = relative.removeprefix(prefix).removesuffix(".json")
    if not relative.startswith(prefix) or not re.fullmatch(r"\d{6,}", number, re.ASCII):
        return None
    return int(number) if part_name(int(number), shard) == relative else None


def report_name(run_id: str, shard: Shard | None) -> str:
    return f"{run_id}{shard_suffix(shard)}.json"


def is_report_name(name: str, shard: Shard | None) -> bool:
    """Whether `name` (in `runs/`) is a run report this tool wrote for `shard` (None: for a
    whole run): `<run_id>.json` or `<run_id>.shard-K-of-N.json`. Pruning deletes only these:
    anything else a person put in `runs/` is theirs."""
    match = _REPORT.fullmatch(name)
    return match is not None and (match[1] or "") == shard_suffix(shard)


def part_path(final: Path, shard: Shard | None = None) -> Path:
    """`<final>.part`; a shard's is `<final>.shard-K-of-N.part`, so that runs sharded
    different ways on one folder can never write into the same `.part`."""
    return final.with_name(f"{final.name}{shard_suffix(shard)}{PART_SUFFIX}")


def temp_affixes(name: str) -> tuple[str, str]:
    """The prefix and suffix of the temp file an atomic write of `name` goes through."""
    return f".{name}.", TEMP_SUFFIX


def temp_glob(name_glob: str) -> str:
    """The temp files of the atomic writes of the files named like `name_glob`."""
    return f".{name_glob}.*{TEMP_SUFFIX}"


def sidecar_stem(relative: str) -> str | None:
    """`<stem>` of `<stem>.call.json` or `<stem>.transcript.json`, else None."""
    for suffix in SIDECAR_SUFFIXES:
        if relative.endswith(suffix):
            return relative[: -len(suffix)]
    return None


PROBE_PREFIX = ".osvi-archiver-probe-"  # a bucket's write test beside a refused key


def probe_name(folder: str, token: str) -> str:
    """The key of a probe object in `folder` (a bucket's: does it accept writes there?)."""
    return f"{folder}/{PROBE_PREFIX}{token}" if folder else f"{PROBE_PREFIX}{token}"


def is_tool_file(folder: str, name: str) -> bool:
    """The tool's own (in `folder`, relative to the archive; '' its top): the state, the
    manifest and the reports, a `.part` of a run in flight, the temp file of an atomic
    write, a bucket's probe object."""
    if not folder and (name in _TOP_LEVEL or _SHARD_MANIFEST.fullmatch(name)):
        return True
    if name.startswith(PROBE_PREFIX):
        return True
    return name.endswith(PART_SUFFIX) or (name.startswith(".") and name.endswith(TEMP_SUFFIX))


def states_in(out_dir: Path) -> list[Shard | None]:
    """Every state this folder holds: None for the whole-archive one, then each shard's."""
    found: list[Shard | None] = []
    if (out_dir / STATE_DIR / STATE_FILE).is_file():
        found.append(None)
    try:
        names = sorted(p.name for p in (out_dir / STATE_DIR).iterdir())
    except OSError:
        return found
    shards = []
    for name in names:
        shard = from_label(name)
        if shard and (out_dir / STATE_DIR / name / STATE_FILE).is_file():
            shards.append(shard)
    return found + sorted(shards, key=lambda s: (s[1], s[0]))


def part_inside(root: Path, relative: str) -> Path | None:
    """`root / relative` when `relative` is a `.part` name of the archive, else None."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.name.endswith(PART_SUFFIX):
        return None
    path = root / pure
    try:
        inside = path.parent.resolve().is_relative_to(root.resolve())
    except OSError:
        return None
    return path if inside else None
