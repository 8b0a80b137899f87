"""Call ids from CSV or plain-text streams (SPEC §4): detection, normalisation, invalid rows.

Pure and streaming: a list of millions of ids is read line by line, never held in memory.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import stat
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from archiver.archive.ids import canonical_uuid, unquote
from archiver.errors import UsageError
from archiver.osvi.listing import UNANSWERED

STDIN = "<stdin>"
# A call id row is ~40 characters; anything this long is garbage, and capping it keeps memory
# flat however long a line (or a file with no line breaks at all) is.
MAX_LINE_CHARS = 64 * 1024
_SHOWN_CHARS = 80
_DEFAULT_COLUMNS = ("call_id", "id")


@dataclass(frozen=True, slots=True)
class CallId:
    call_id: str
    source: str
    line: int
    retried: bool = False  # taken from the archive's state first (pending, failed calls)
    # A CSV's `status` column (a `list` export) saying the call was never answered: it has no
    # recording, and is settled without a request (unless --force or --retry-not-available).
    unanswered: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidRow:
    source: str
    line: int
    reason: str
    value: str


InputItem = CallId | InvalidRow
_Line = tuple[int, str, bool]  # physical line number, text without its line break, too long
_RowParser = Callable[[str, int, str], InputItem | None]


@dataclass(frozen=True, slots=True)
class _Plain:
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class _Csv:
    index: int
    name: str
    status: int | None = None  # the `status` column, when the header has one


def read_sources(
    paths: Sequence[str], stdin: BinaryIO, id_column: str | None = None
) -> Iterator[InputItem]:
    for path in paths:
        if path == "-":
            yield from read_ids(stdin, STDIN, id_column)
            continue
        with _open(path) as stream:
            yield from read_ids(stream, path, id_column)


def check_sources(paths: Sequence[str], id_column: str | None) -> None:
    for path in paths:
        if path != "-":
            _check_file(path, id_column)


def _check_file(path: str, id_column: str | None) -> None:
    try:
        mode = Path(path).stat().st_mode
    except OSError as exc:
        raise UsageError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise UsageError(f"cannot read input file {path}: it is a directory")
    if not stat.S_ISREG(mode):
        # A pipe (`run <(osvi-archiver list)`) would lose what is read here: check access only.
        if not os.access(path, os.R_OK):
            raise UsageError(f"cannot read input file {path}: permission denied")
        return
    with _open(path) as stream, _text(stream) as text:
        for _ in _detect(_lines(text), path, id_column):
            pass


def read_ids(stream: BinaryIO, source: str, id_column: str | None = None) -> Iterator[InputItem]:
    with _text(stream) as text:
        lines = _lines(text)
        layout = yield from _detect(lines, source, id_column)
        if isinstance(layout, _Plain):
            yield _item(source, layout.line, layout.text)
            yield from _read_rows(lines, source, _plain_item)
        elif isinstance(layout, _Csv):
            yield from _read_rows(lines, source, partial(_csv_item, layout=layout))


@contextmanager
def _text(stream: BinaryIO) -> Iterator[io.TextIOWrapper]:
    # utf-8-sig drops a leading BOM; newline=None turns CRLF and lone CR into "\n".
    wrapper = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline=None)
    try:
        yield wrapper
    finally:
        # Without detach, the wrapper would close the caller's stream (stdin) when collected.
        # When the generator is only collected after the caller closed that stream itself,
        # there is nothing left to protect.
        with contextlib.suppress(ValueError):
            wrapper.detach()


def _open(path: str) -> BinaryIO:
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read input file {path}: {exc.strerror or exc}") from exc


def _lines(text: io.TextIOWrapper) -> Iterator[_Line]:
    number = 0
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if line.endswith("\n"):
            yield number, line[:-1], False
        elif len(line) <= MAX_LINE_CHARS:
            yield number, line, False
        else:
            while (rest := text.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                pass
            yield number, line, True


def _detect(
    lines: Iterator[_Line], source: str, id_column: str | None
) -> Generator[InvalidRow, None, _Plain | _Csv | None]:
    """Yield the invalid rows before the first real line; return what that line says."""
    for number, line, too_long in lines:
        if too_long:
            yield _too_long(source, number, line)
        elif not _is_blank_or_comment(line):
            header = _header_fields(line, id_column)
            if header is None:
                return _Plain(number, line)
            index = _id_index(header, source, id_column)
            return _Csv(index, _header_name(header[index]), _listing_status(header, index))
    return None


# The columns that make a CSV a `list` export (the API's call fields), whose `status` is the
# call's own (picked, busy, ...). Any other CSV's `status` is not trusted: the manifest's CSV
# export has one too, where `failed` means a download of ours that failed.
_LISTING_COLUMNS = frozenset({"call_picked_at", "agent_uuid", "call_type", "call_ended_reason"})
_NOT_A_LISTING = frozenset({"sha256", "error_kind", "archived_at"})  # the manifest's export


def _listing_status(header: list[str], index: int) -> int | None:
    """The `status` column of a `list` export (its call fields all there, none of the
    manifest's), else None: the column is then any other file's, and not read."""
    names = [_header_name(field) for field in header]
    if "status" not in names or not set(names) >= _LISTING_COLUMNS or _NOT_A_LISTING & set(names):
        return None
    status = names.index("status")
    return None if status == index else status


def _read_rows(lines: Iterator[_Line], source: str, parse: _RowParser) -> Iterator[InputItem]:
    for number, line, too_long in lines:
        item = _too_long(source, number, line) if too_long else parse(source, number, line)
        if item is not None:
            yield item


def _plain_item(source: str, number: int, line: str) -> InputItem | None:
    return None if _is_blank_or_comment(line) else _item(source, number, line)


def _csv_item(source: str, number: int, line: str, layout: _Csv) -> InputItem | None:
    if not line.strip():
        return None
    fields = _split_csv(line)
    if len(fields) <= layout.index:
        return InvalidRow(source, number, "missing call id column", _show(line))
    value = fields[layout.index]
    item = _item(source, number, value)
    if isinstance(item, InvalidRow) and _header_name(value) == layout.name:
        return None  # the header again, as in `cat a.csv b.csv`
    if isinstance(item, CallId) and layout.status is not None and len(fields) > layout.status:
        status = fields[layout.status].strip()
        if status in UNANSWERED:
            return dataclasses.replace(item, unanswered=status)
    return item


def _split_csv(line: str) -> list[str]:
    # One physical line is one record: a stray quote then spoils its own line only, instead of
    # swallowing the rest of the file into one field. A non-strict reader given one line with no
    # line break, shorter than csv.field_size_limit(), never raises (NUL is fine since 3.11).
    return next(csv.reader((line,)), [])


def _header_fields(line: str, id_column: str | None) -> list[str] | None:
    if "," in line:
        return _split_csv(line)
    known = {*_DEFAULT_COLUMNS, *_wanted_columns(id_column)}
    return [line] if _header_name(line) in known else None


def _wanted_columns(id_column: str | None) -> list[str]:
    return [_header_name(id_column)] if id_column else list(_DEFAULT_COLUMNS)


def _id_index(header: list[str], source: str, id_column: str | None) -> int:
    names = [_header_name(field) for field in header]
    wanted = _wanted_columns(id_column)
    for name in wanted:
        if name in names:
            return names.index(name)
    found = ", ".join(repr(_show(field)) for field in header[:20])
    advice = "name the call id column with --id-column"
    if any(canonical_uuid(field) for field in header):
        advice = "the first line looks like data: add a header line naming the columns"
    raise UsageError(
        f"{source}: the CSV header has no {' or '.join(wanted)} column "
        f"(columns found: {found}); {advice}"
    )


def _item(source: str, number: int, value: str) -> InputItem:
    call_id = canonical_uuid(value)
    if call_id is not None:
        return CallId(call_id, source, number)
    if not unquote(value):
        reason = "empty call id"
    elif "\ufffd" in value:
        reason = "not valid UTF-8"
    else:
        reason = "not a UUID"
    return InvalidRow(source, number, reason, _show(value))


def _too_long(source: str, number: int, line: str) -> InvalidRow:
    return InvalidRow(source, number, "line too long", _show(line))


def _is_blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _header_name(text: str) -> str:
    return unquote(text.replace("\ufeff", "")).lower()


def _show(value: str) -> str:
    """The value as a report can print it: escaped, at most _SHOWN_CHARS characters."""
    head = value[: _SHOWN_CHARS + 1]
    shown = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in head
    )
    if len(shown) > _SHOWN_CHARS:
        return shown[: _SHOWN_CHARS - 1] + "…"
    return shown


def count_ids(paths: Sequence[str]) -> int | None:
    """About how many ids the input files hold, for the progress total and ETA: their lines,
    less a CSV header, counted in large blocks without parsing (blank and comment lines count
    too, so it may run a little high). None when an input is stdin or not a regular file."""
    total = 0
    for path in paths:
        if path == "-" or not Path(path).is_file():
            return None
        try:
            with Path(path).open("rb") as stream:
                # Bounded: a file with no line break at all must not be read into memory whole.
                first = stream.readline(MAX_LINE_CHARS + 1)
                while first and not first.strip():
                    first = stream.readline(MAX_LINE_CHARS + 1)
                lines = 1 if first and canonical_uuid(_first_cell(first)) else 0
                last = first
                while block := stream.read(1 << 20):
                    lines += block.count(b"\n")
                    last = block
                if last and not last.endswith(b"\n") and last is not first:
                    lines += 1
        except OSError:
            return None
        total += lines
    return total


def _first_cell(line: bytes) -> str:
    line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM, as the reader tolerates it
    return line.split(b",", 1)[0].strip().strip(b'"').decode("utf-8", "replace")
