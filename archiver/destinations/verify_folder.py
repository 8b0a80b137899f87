"""`osvi-archiver verify` (§2): read every archived file again and hold it against the state.

A recording that rots on disk (a bad sector, a copy cut short, someone's edit) is found only by
reading it back. Checked against the state, not manifest.json: the manifest is rendered from
the state and may lag it. A folder shared by shards holds one state per shard: every one is
checked, and a file is unexpected only when no state owns it. Reads files and the states only:
no network, nothing written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archiver.archive.names import STATE_DIR, STATE_FILE, is_tool_file, sidecar_stem, states_in
from archiver.archive.outcomes import Status
from archiver.archive.shard import Shard, shard_label
from archiver.errors import LocalError
from archiver.state.call_records import CallRecord
from archiver.state.database import State
from archiver.transfer.audio import AUDIO_SUFFIXES

KINDS = ("missing", "truncated", "modified", "unexpected")
MAX_PROBLEMS_SHOWN = 100
_CHUNK = 1 << 20  # files are hashed 1 MiB at a time: a recording never sits in memory
# Every extension a recording can get (audio.extension), tried to find a sidecar's recording.
_RECORDING_SUFFIXES = tuple(sorted({*AUDIO_SUFFIXES, ".bin"}))
# O_NONBLOCK: opening a FIFO left at an archived path must not hang the check.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # one of KINDS
    path: str  # relative to the archive folder, POSIX
    call_id: str | None  # None for unexpected files
    detail: str


@dataclass
class VerifyReport:
    states: list[str] = field(default_factory=list)  # "whole archive" or shard-K-of-N
    checked: int = 0  # archived files re-hashed (or found missing)
    bytes_checked: int = 0  # bytes read back
    problems: list[Problem] = field(default_factory=list)
    # What is off with the manifest's index (export.IndexLag): said, not a problem of the
    # recordings (the parts are whole; the next run rewrites the index).
    manifest: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        found = Counter(p.kind for p in self.problems)
        return {kind: found[kind] for kind in KINDS}


def verify_archive(
    out_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
    index_lag: Callable[[Shard | None], str | None] | None = None,
) -> VerifyReport:
    """Check every archived call's file, then list files no archived call owns.

    `progress` gets the number of archived files checked so far, after each one; `index_lag`
    says what is off with a shard's manifest index, if anything (the manifest is a layer
    above: the command passes manifest.export's check). Raises LocalError when `out_dir`
    holds no readable state."""
    report = VerifyReport()
    shards = states_in(out_dir)
    if not shards:
        raise LocalError(
            f"{out_dir} holds no osvi-archiver state (no {STATE_DIR}/{STATE_FILE}, no shard's)"
        )
    with contextlib.ExitStack() as stack:
        states = [stack.enter_context(State(out_dir, readonly=True, shard=s)) for s in shards]
        for state in states:
            report.states.append(shard_label(state.shard) or "whole archive")
            for record in state.calls():
                if record.status != Status.ARCHIVED:
                    continue
                problem, read = check_file(out_dir, record)
                report.checked += 1
                report.bytes_checked += read
                if problem is not None:
                    report.problems.append(problem)
                if progress is not None:
                    progress(report.checked)
        report.problems.extend(find_unexpected(out_dir, states))
    if index_lag is not None:
        report.manifest = [lag for lag in map(index_lag, shards) if lag is not None]
    return report


def check_file(out_dir: Path, record: CallRecord) -> tuple[Problem | None, int]:
    """The problem with one archived call's file, if any, and how many bytes were read."""
    kind, detail, read = _examine(out_dir, record)
    problem = Problem(kind, record.path or "", record.call_id, detail) if kind else None
    return problem, read


def _examine(out_dir: Path, record: CallRecord) -> tuple[str, str, int]:
    if record.path is None or record.bytes is None or record.sha256 is None:
        return "missing", "no file in the state", 0
    try:
        fd = os.open(out_dir / record.path, _OPEN_FLAGS)
    except OSError as exc:
        return (*_open_failure(exc), 0)
    try:
        return _compare(fd, record.bytes, record.sha256)
    finally:
        os.close(fd)


def _open_failure(exc: OSError) -> tuple[str, str]:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "missing", "no file at this path"
    if exc.errno == errno.ELOOP:
        return "modified", "a symbolic link, not the archived file"
    return "modified", f"cannot be read: {exc.strerror or exc}"


def _compare(fd: int, size: int, sha256: str) -> tuple[str, str, int]:
    """(kind, detail, bytes read); kind is empty when the file is the one archived. The hash
    is skipped when the size already differs."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return "modified", "not a regular file", 0
    found = f"expected {size} bytes, found {info.st_size}"
    if info.st_size != size:
        return ("truncated" if info.st_size < size else "modified"), found, 0
    try:
        digest, read = _sha256(fd)
    except OSError as exc:
        return "modified", f"cannot be read: {exc.strerror or exc}", 0
    return ("" if digest == sha256 else "modified"), "sha256 differs", read


def _sha256(fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    read = 0
    while count := os.readv(fd, [buffer]):
        digest.update(view[:count])
        read += count
    return digest.hexdigest(), read


def find_unexpected(out_dir: Path, states: list[State]) -> Iterator[Problem]:
    """Every file or link under `out_dir` that is neither the tool's own nor an archived call's
    (or its sidecar) in any of `states`, in sorted order. Links are reported, never followed."""
    stack = [iter(_entries(out_dir, ""))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        relative, kind = item
        if kind == "dir":
            try:
                stack.append(iter(_entries(out_dir, relative)))
            except OSError as exc:
                detail = f"cannot be listed ({exc.strerror or exc}); its files were not checked"
                yield Problem("unexpected", relative, None, detail)
        elif not any(owned(state, relative) for state in states):
            yield Problem("unexpected", relative, None, unexpected_detail(relative, kind))


def _entries(out_dir: Path, folder: str) -> list[tuple[str, str]]:
    """A folder's entries as (relative path, kind), sorted, the tool's own files left out.
    Strings, not DirEntry objects: the default layout puts every recording in one folder."""
    found = []
    with os.scandir(out_dir / folder) as entries:
        for entry in entries:
            if not is_tool_file(folder, entry.name):
                relative = f"{folder}/{entry.name}" if folder else entry.name
                found.append((relative, _kind(entry)))
    found.sort()
    return found


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def owned(state: State, relative: str) -> bool:
    """An archived call's file, or a sidecar of one (`<stem>.call.json` beside `<stem><ext>`)."""
    if state.find_path(relative) is not None:
        return True
    stem = sidecar_stem(relative)
    return stem is not None and any(
        state.find_path(stem + suffix) is not None for suffix in _RECORDING_SUFFIXES
    )


def unexpected_detail(relative: str, kind: str) -> str:
    if kind == "link":
        return "a symbolic link no archived call owns (not followed)"
    if kind == "other":
        return "not a regular file, and no archived call owns it"
    if sidecar_stem(relative) is not None:
        return "a sidecar of no archived recording"
    return "no archived call owns this file"


def render_text(report: VerifyReport, out_dir: object) -> str:
    """The block a person reads: what was checked, counts per kind, then one line per problem."""
    mib = report.bytes_checked / 2**20
    lines = [
        "── osvi-archiver verify ──",
        f"archive           {out_dir}",
        f"states            {', '.join(report.states)}",
        f"files checked     {report.checked} ({report.bytes_checked} bytes, {mib:.1f} MiB read)",
    ]
    counts = report.counts()
    lines += [f"{kind:<18}{counts[kind]}" for kind in KINDS]
    lines.append("result            " + ("ok" if report.ok else "PROBLEMS FOUND"))
    lines += [f"manifest          {note}" for note in report.manifest]
    for problem in report.problems[:MAX_PROBLEMS_SHOWN]:
        call = f" (call {problem.call_id})" if problem.call_id else ""
        lines.append(f"  {problem.kind:<11}{problem.path}{call}: {problem.detail}")
    more = len(report.problems) - MAX_PROBLEMS_SHOWN
    if more > 0:
        lines.append(f"  … and {more} more")
    return "\n".join(lines)


def report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "states": report.states,
        "checked": report.checked,
        "bytes_checked": report.bytes_checked,
        "problems": [asdict(p) for p in report.problems],
        "counts": report.counts(),
        "manifest": report.manifest,
    }
