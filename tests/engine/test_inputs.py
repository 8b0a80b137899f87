from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.archive.ids import canonical_uuid
from archiver.archive.shard import parse_shard, shard_index
from archiver.engine.inputs import (
    STDIN,
    CallId,
    InputItem,
    InvalidRow,
    check_sources,
    count_ids,
    read_ids,
    read_sources,
)
from archiver.errors import UsageError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

A = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"
B = "00000000-0000-0000-0000-000000000000"
C = "ffffffff-ffff-ffff-ffff-ffffffffffff"
CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def read(data: bytes, id_column: str | None = None) -> list[InputItem]:
    return list(read_ids(io.BytesIO(data), "in.txt", id_column))


def ids(items: list[InputItem]) -> list[tuple[str, int]]:
    return [(item.call_id, item.line) for item in items if isinstance(item, CallId)]


def invalid(items: list[InputItem]) -> list[tuple[int, str, str]]:
    return [(item.line, item.reason, item.value) for item in items if isinstance(item, InvalidRow)]


# canonical_uuid


@pytest.mark.parametrize(
    "text", [A, A.upper(), f"  {A}\t", f'"{A}"', f"'{A}'", f' " {A.upper()} " ']
)
def test_canonical_uuid_accepts_spaces_quotes_and_upper_case(text: str) -> None:
    assert canonical_uuid(text) == A


@pytest.mark.parametrize(
    "text",
    [
        "",
        f"{{{A}}}",
        f"urn:uuid:{A}",
        A.replace("-", ""),
        A[:-1],
        A + "0",
        A.replace("3", "\u0663"),  # ARABIC-INDIC DIGIT THREE is a digit, not a hex digit
        A.replace("a", "\uff41"),  # FULLWIDTH LATIN SMALL LETTER A
        f"\"{A}'",
        f'""{A}""',
        f"{A}x",
        A.replace("-", "_"),
    ],
)
def test_canonical_uuid_rejects_every_other_form(text: str) -> None:
    assert canonical_uuid(text) is None


# plain text


def test_plain_text_yields_one_id_per_line_with_physical_line_numbers() -> None:
    items = read(f"{A}\n{B}\n{C}\n".encode())
    assert items == [CallId(A, "in.txt", 1), CallId(B, "in.txt", 2), CallId(C, "in.txt", 3)]


def test_plain_text_skips_blank_and_comment_lines() -> None:
    data = f"# exported today\n\n{A}\n   \n  # {B}\n{C}\n".encode()
    assert read(data) == [CallId(A, "in.txt", 3), CallId(C, "in.txt", 6)]


def test_last_line_without_line_break_is_read() -> None:
    assert ids(read(f"{A}\n{B}".encode())) == [(A, 1), (B, 2)]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings_lf_crlf_and_lone_cr_are_tolerated(newline: str) -> None:
    data = newline.join(["# ids", A, "", B, ""]).encode()
    assert ids(read(data)) == [(A, 2), (B, 4)]


def test_mixed_line_endings_keep_physical_line_numbers() -> None:
    data = f"{A}\r\n{B}\r{C}\nnope\r\n".encode()
    items = read(data)
    assert ids(items) == [(A, 1), (B, 2), (C, 3)]
    assert invalid(items) == [(4, "not a UUID", "nope")]


def test_utf8_bom_is_ignored_in_plain_text() -> None:
    assert ids(read(b"\xef\xbb\xbf" + A.encode() + b"\n")) == [(A, 1)]


def test_surrounding_spaces_and_quotes_are_tolerated() -> None:
    data = f"  {A}  \n\"{B}\"\n '{C}' \n".encode()
    assert ids(read(data)) == [(A, 1), (B, 2), (C, 3)]


def test_upper_case_ids_are_normalised_to_lower_case() -> None:
    assert ids(read(f"{A.upper()}\n".encode())) == [(A, 1)]


def test_duplicates_are_all_yielded_because_dedup_happens_on_disk() -> None:
    assert ids(read(f"{A}\n{A.upper()}\n{A}\n".encode())) == [(A, 1), (A, 2), (A, 3)]


def test_invalid_rows_carry_source_physical_line_and_reason() -> None:
    data = f'{A}\n\nnot-a-uuid\n""\n{{{B}}}\n# fine\n{C}\n'.encode()
    items = read(data)
    assert ids(items) == [(A, 1), (C, 7)]
    assert [item for item in items if isinstance(item, InvalidRow)] == [
        InvalidRow("in.txt", 3, "not a UUID", "not-a-uuid"),
        InvalidRow("in.txt", 4, "empty call id", '""'),
        InvalidRow("in.txt", 5, "not a UUID", f"{{{B}}}"),
    ]


def test_invalid_value_is_escaped_and_cut_to_80_characters() -> None:
    items = read(b"\x1b[31mred\tx\n" + b"z" * 500 + b"\n")
    assert invalid(items)[0] == (1, "not a UUID", "\\x1b[31mred\\tx")
    value = invalid(items)[1][2]
    assert len(value) == 80
    assert value == "z" * 79 + "…"


def test_empty_stream_and_comment_only_stream_yield_nothing() -> None:
    assert read(b"") == []
    assert read(b"\xef\xbb\xbf\n# nothing\n\n") == []


# CSV


def test_csv_uses_the_call_id_column() -> None:
    data = f"created_at,call_id,agent\n2024-01-01,{A},x\n2024-01-02,{B},y\n".encode()
    assert ids(read(data)) == [(A, 2), (B, 3)]


def test_csv_falls_back_to_the_id_column() -> None:
    data = f"id,status\n{A},completed\n".encode()
    assert ids(read(data)) == [(A, 2)]


def test_csv_prefers_call_id_over_id() -> None:
    data = f"id,call_id\n{B},{A}\n".encode()
    assert ids(read(data)) == [(A, 2)]


def test_csv_id_column_option_picks_that_column() -> None:
    data = f' "Recording UUID" ,call_id\n{A},{B}\n'.encode()
    assert ids(read(data, id_column="recording uuid")) == [(A, 2)]


def test_csv_header_names_ignore_case_spaces_quotes_and_bom() -> None:
    data = b'\xef\xbb\xbf"Agent", " CALL_ID "\r\nbob,' + A.encode() + b"\r\n"
    assert ids(read(data)) == [(A, 2)]


def test_csv_quoted_fields_containing_commas_are_parsed() -> None:
    data = f'name,call_id,notes\n"Doe, Jane",{A},"a, b, c"\n"x,y","{B}",\n'.encode()
    assert ids(read(data)) == [(A, 2), (B, 3)]


def test_csv_header_without_id_column_is_a_usage_error_naming_source_and_columns() -> None:
    with pytest.raises(UsageError) as caught:
        read(f"uuid,created_at\n{A},2024\n".encode())
    message = str(caught.value)
    assert "in.txt" in message
    assert "call_id or id" in message
    assert "'uuid', 'created_at'" in message
    assert "--id-column" in message


def test_csv_header_without_the_requested_id_column_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"no recording column .*'call_id', 'name'"):
        read(f"call_id,name\n{A},x\n".encode(), id_column="recording")


def test_csv_without_header_is_a_usage_error_that_says_the_first_line_is_data() -> None:
    with pytest.raises(UsageError, match="looks like data"):
        read(f"{A},2024-01-01\n{B},2024-01-02\n".encode())


def test_csv_row_with_too_few_columns_is_invalid() -> None:
    items = read(f"agent,call_id\nbob\nbob,{A}\n".encode())
    assert invalid(items) == [(2, "missing call id column", "bob")]
    assert ids(items) == [(A, 3)]


def test_csv_blank_lines_are_skipped_and_line_numbers_stay_physical() -> None:
    items = read(f"call_id\r\n\r\n{A}\r\n  \r\n{B}\r\n".encode())
    assert ids(items) == [(A, 3), (B, 5)]
    assert invalid(items) == []


def test_csv_empty_and_bad_values_are_invalid_rows() -> None:
    items = read(f'x,call_id\n1,\n2,""\n3,nope\n4,{A}\n'.encode())
    assert invalid(items) == [
        (2, "empty call id", ""),
        (3, "empty call id", ""),
        (4, "not a UUID", "nope"),
    ]
    assert ids(items) == [(A, 5)]


def test_csv_repeated_header_line_is_skipped() -> None:
    data = f"call_id,x\n{A},1\ncall_id,x\n{B},2\n".encode()
    items = read(data)
    assert ids(items) == [(A, 2), (B, 4)]
    assert invalid(items) == []


def test_comment_lines_before_a_csv_header_are_skipped() -> None:
    assert ids(read(f"# export\n\ncall_id,x\n{A},1\n".encode())) == [(A, 4)]


# detection


@pytest.mark.parametrize(
    ("first_line", "id_column"),
    [("call_id", None), ("ID", None), ('"Call_Id"', None), ("uuid", "UUID")],
)
def test_a_lone_known_header_name_means_single_column_csv(
    first_line: str, id_column: str | None
) -> None:
    items = read(f"{first_line}\n{A}\n".encode(), id_column)
    assert items == [CallId(A, "in.txt", 2)]


def test_a_first_line_with_a_comma_means_csv() -> None:
    items = read(f"call_id,\n{A},\n".encode())
    assert ids(items) == [(A, 2)]


def test_a_first_line_without_comma_or_header_name_means_plain_text() -> None:
    items = read(f"nonsense\n{A}\n".encode())
    assert invalid(items) == [(1, "not a UUID", "nonsense")]
    assert ids(items) == [(A, 2)]


def test_id_column_does_not_apply_to_plain_text() -> None:
    assert ids(read(f"{A}\n".encode(), id_column="uuid")) == [(A, 1)]


# hostile input


def test_line_of_one_mebibyte_is_invalid_and_reading_continues() -> None:
    data = f"{A}\n".encode() + b"x" * (1 << 20) + f"\n{B}\n".encode()
    items = read(data)
    assert ids(items) == [(A, 1), (B, 3)]
    assert invalid(items) == [(2, "line too long", "x" * 79 + "…")]


def test_line_too_long_before_a_csv_header_does_not_hide_the_header() -> None:
    data = b"y" * (1 << 20) + f"\ncall_id,x\n{A},1\n".encode()
    items = read(data)
    assert invalid(items)[0][:2] == (1, "line too long")
    assert ids(items) == [(A, 3)]


def test_line_too_long_inside_csv_is_invalid() -> None:
    data = f"call_id,notes\n{A},".encode() + b"n" * (1 << 20) + f"\n{B},short\n".encode()
    items = read(data)
    assert invalid(items)[0][:2] == (2, "line too long")
    assert ids(items) == [(B, 3)]


def test_nul_bytes_make_invalid_rows_not_crashes() -> None:
    plain = read(b"\x00\n" + A.encode() + b"\x00\n" + B.encode() + b"\n")
    assert invalid(plain) == [(1, "not a UUID", "\\x00"), (2, "not a UUID", A + "\\x00")]
    assert ids(plain) == [(B, 3)]
    csv_items = read(b"call_id,x\n\x00,\x00\n" + A.encode() + b",\x00\n")
    assert invalid(csv_items) == [(2, "not a UUID", "\\x00")]
    assert ids(csv_items) == [(A, 3)]


def test_invalid_utf8_is_an_invalid_row() -> None:
    items = read(b"\xff\xfe" + A.encode()[2:] + b"\n" + B.encode() + b"\n")
    assert invalid(items) == [(1, "not valid UTF-8", "\ufffd\ufffd" + A[2:])]
    assert ids(items) == [(B, 2)]


def test_invalid_utf8_in_an_ignored_csv_column_does_not_spoil_the_row() -> None:
    items = read(b"name,call_id\n\xc3\x28," + A.encode() + b"\n\xff,\xff\n")
    assert ids(items) == [(A, 2)]
    assert invalid(items) == [(3, "not valid UTF-8", "\ufffd")]


def test_read_ids_leaves_the_callers_stream_open() -> None:
    stream = io.BytesIO(f"{A}\n{B}\n".encode())
    items = read_ids(stream, "s")
    assert next(items) == CallId(A, "s", 1)
    del items
    assert not stream.closed
    assert list(read_ids(stream, "s")) == []  # the first reader buffered ahead; no ValueError
    assert not stream.closed


class _CountingIds(io.RawIOBase):
    """A stream of `count` ids made on demand, remembering how many bytes were pulled."""

    def __init__(self, count: int) -> None:
        self._lines = (
            f"{i:08x}-0000-4000-8000-00000000000{i % 10}\n".encode() for i in range(count)
        )
        self._pending = b""
        self.pulled = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: WriteableBuffer, /) -> int:
        buffer = memoryview(target).cast("B")
        while len(self._pending) < len(buffer):
            line = next(self._lines, None)
            if line is None:
                break
            self._pending += line
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.pulled += size
        return size


def test_a_million_line_stream_is_read_lazily() -> None:
    source = _CountingIds(1_000_000)
    items = read_ids(io.BufferedReader(source), "big")
    first = list(itertools.islice(items, 3))
    assert [item.line for item in first] == [1, 2, 3]
    assert source.pulled < 256 * 1024  # of about 37 MB
    assert sum(1 for _ in itertools.islice(items, 199_997)) == 199_997
    assert source.pulled < 200_000 * 37 + 256 * 1024


def test_memory_does_not_grow_with_the_number_of_lines() -> None:
    items = read_ids(io.BufferedReader(_CountingIds(51_000)), "big")
    assert sum(1 for _ in itertools.islice(items, 1000)) == 1000
    tracemalloc.start()
    try:
        assert sum(1 for _ in items) == 50_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024  # 50,000 ids kept would take several MB


_FRAGMENTS = [A.encode(), A.upper().encode(), b",", b'"', b"'", b"\r", b"\n", b"\r\n", b" "]
_FRAGMENTS += [b"\xef\xbb\xbf", b"\x00", b"\xff", b"#", b"call_id", b"id", b"uuid", b"{"]


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=12)), max_size=40).map(
        b"".join
    ),
    id_column=st.sampled_from([None, "uuid", "ID"]),
)
def test_any_bytes_yield_only_canonical_ids_and_never_crash(
    data: bytes, id_column: str | None
) -> None:
    error = ""
    try:
        items = read(data, id_column)
    except UsageError as exc:
        items, error = [], str(exc)
    assert not error or "the CSV header has no" in error
    lines = [item.line for item in items]
    assert lines == sorted(lines)
    for item in items:
        if isinstance(item, CallId):
            assert CANONICAL.fullmatch(item.call_id)
        else:
            assert len(item.value) <= 80
            assert item.value.isprintable()


# read_sources and check_sources


def test_read_sources_reads_files_and_stdin_in_the_order_given(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.txt"
    first.write_bytes(f"call_id\n{A}\n".encode())
    second.write_bytes(f"{C}\nbad\n".encode())
    stdin = io.BytesIO(f"{B}\n".encode())
    items = list(read_sources([str(first), "-", str(second)], stdin))
    assert items == [
        CallId(A, str(first), 2),
        CallId(B, STDIN, 1),
        CallId(C, str(second), 1),
        InvalidRow(str(second), 2, "not a UUID", "bad"),
    ]


def test_read_sources_missing_file_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(UsageError, match=r"missing\.csv: No such file or directory"):
        list(read_sources([str(missing)], io.BytesIO()))


def test_read_sources_opens_files_lazily_one_after_another(tmp_path: Path) -> None:
    present = tmp_path / "a.txt"
    present.write_bytes(f"{A}\n".encode())
    items = read_sources([str(present), str(tmp_path / "later.txt")], io.BytesIO())
    assert next(items) == CallId(A, str(present), 1)
    with pytest.raises(UsageError, match=r"later\.txt"):
        next(items)


def test_read_sources_passes_id_column_on(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(f"ref\n{A}\n".encode())
    assert list(read_sources([str(path)], io.BytesIO(), "REF")) == [CallId(A, str(path), 2)]


def test_check_sources_accepts_readable_plain_and_csv_files_and_stdin(tmp_path: Path) -> None:
    plain, table = tmp_path / "a.txt", tmp_path / "b.csv"
    plain.write_bytes(f"{A}\n".encode())
    table.write_bytes(f"# x\nname,call_id\nbob,{A}\n".encode())
    check_sources([str(plain), "-", str(table)], None)


def test_check_sources_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nope\.csv: No such file or directory"):
        check_sources([str(tmp_path / "nope.csv")], None)


def test_check_sources_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        check_sources([str(tmp_path)], None)


def test_check_sources_rejects_a_csv_without_a_usable_id_column(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(f"call_id\n{A}\n".encode())
    bad.write_bytes(f"name,uuid\nbob,{A}\n".encode())
    with pytest.raises(UsageError, match=r"bad\.csv: .*'name', 'uuid'"):
        check_sources([str(good), str(bad)], None)
    with pytest.raises(UsageError, match=r"good\.csv: .*no ref column"):
        check_sources([str(good)], "ref")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_check_sources_rejects_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(f"{A}\n".encode())
    path.chmod(0)
    with pytest.raises(UsageError, match=r"secret\.txt: Permission denied"):
        check_sources([str(path)], None)


def test_check_sources_does_not_read_from_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    check_sources([str(fifo)], None)  # opening a FIFO with no writer would block


# shards


@pytest.mark.parametrize(
    ("call_id", "count", "expected"),
    [(A, 2, 1), (A, 7, 2), (A, 16, 13), (B, 7, 1), (B, 16, 4), (C, 7, 3), (C, 16, 2)],
)
def test_shard_of_is_stable_across_versions_and_machines(
    call_id: str, count: int, expected: int
) -> None:
    formula = int.from_bytes(hashlib.sha256(call_id.encode("ascii")).digest()[:8], "big") % count
    assert formula == expected
    assert shard_index(call_id, count) == expected
    # Any spelling of an id is one call: the shard of its canonical form.
    assert shard_index(canonical_uuid(call_id.upper()) or "", count) == expected


def test_shards_partition_the_ids() -> None:
    all_ids = [f"{i:08x}-1111-4222-8333-{i * 7919:012x}" for i in range(2000)]
    count = 5
    shards = [{i for i in all_ids if shard_index(i, count) == k} for k in range(count)]
    assert set().union(*shards) == set(all_ids)
    assert sum(len(shard) for shard in shards) == len(all_ids)
    assert all(300 < len(shard) < 500 for shard in shards)


def test_a_single_shard_keeps_every_id() -> None:
    assert {shard_index(i, 1) for i in (A, B, C)} == {0}


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", (0, 1)), ("3/4", (3, 4)), (" 07/10 ", (7, 10))]
)
def test_parse_shard_reads_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    "text", ["", "4/4", "5/4", "-1/4", "0/0", "1", "a/b", "1/2/3", "+1/4", "1 / 4", "\u0661/\u0662"]
)
def test_parse_shard_rejects_anything_but_k_below_n(text: str) -> None:
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


# Every row accounted for: valid ids in any dress come out canonical, every other non-blank,
# non-comment line is reported at its own line number, whatever the line endings and encoding.

_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits on
_JUNK = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters=_LINE_BREAKS),
    min_size=1,
    max_size=30,
).filter(lambda t: t.strip() != "" and not t.strip().startswith("#") and canonical_uuid(t) is None)


@st.composite
def _plain_text_input(draw: st.DrawFn) -> tuple[bytes, dict[int, str], set[int]]:
    """(input bytes, {line: expected id}, {lines expected invalid})."""
    import uuid as uuid_module

    lines: list[str] = []
    valid: dict[int, str] = {}
    invalid: set[int] = set()
    for number in range(1, draw(st.integers(1, 25)) + 1):
        kind = (
            "id"
            if number == 1
            else draw(st.sampled_from(["id", "blank", "comment", "junk", "huge"]))
        )
        if kind == "id":
            value = str(uuid_module.UUID(int=draw(st.integers(0, 2**128 - 1))))
            dressed = draw(st.sampled_from([value, value.upper(), f' "{value}" ', f"'{value}'\t"]))
            lines.append(dressed)
            valid[number] = value
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "   ", "\t"])))
        elif kind == "comment":
            comment = st.text(
                st.characters(codec="utf-8", exclude_characters=_LINE_BREAKS), max_size=10
            )
            lines.append("# " + draw(comment))
        else:
            lines.append("x" * 70_000 if kind == "huge" else draw(_JUNK))
            invalid.add(number)
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ending.join(lines) + draw(st.sampled_from(["", ending]))
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    return bom + text.encode("utf-8", "surrogatepass"), valid, invalid


@settings(max_examples=100, deadline=None, database=None)
@given(case=_plain_text_input())
def test_every_row_is_either_an_id_or_reported_at_its_line(
    case: tuple[bytes, dict[int, str], set[int]],
) -> None:
    data, valid, invalid = case
    items = read(data)
    assert {i.line: i.call_id for i in items if isinstance(i, CallId)} == valid
    assert {i.line for i in items if isinstance(i, InvalidRow)} == invalid


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "cp1252"])
def test_ids_in_another_encoding_are_reported_not_misread(encoding: str) -> None:
    text = f"{A}\nbad-ü-row\n"
    items = read(text.encode(encoding))
    for item in items:
        if isinstance(item, CallId):
            assert item.call_id == A
    assert any(isinstance(i, InvalidRow) for i in items)


def test_shard_auto_takes_its_index_from_the_job_environment() -> None:
    from archiver.archive.shard import resolve_shard

    assert resolve_shard("auto/8", {"JOB_COMPLETION_INDEX": "3"}) == (3, 8)
    assert resolve_shard("auto/8", {"AWS_BATCH_JOB_ARRAY_INDEX": "7"}) == (7, 8)
    assert resolve_shard("2/8", {}) == (2, 8)
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX"):
        resolve_shard("auto/8", {})
    with pytest.raises(UsageError):
        resolve_shard("auto/8", {"JOB_COMPLETION_INDEX": "8"})


# count_ids: the progress total, counted without parsing

_U = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{_U}\n{_U}\n", 2),  # plain text
        (f"{_U}\n{_U}", 2),  # no final newline
        (f"call_id\n{_U}\n{_U}\n", 2),  # a header is not an id
        (f"call_id,name\n{_U},a\n{_U},b", 2),
        (f"\ufeff{_U}\n{_U}\n", 2),  # a BOM before the first id
        (f"\ufeffcall_id\n{_U}\n", 1),
        (f"\n\n{_U}\n", 1),  # leading blank lines
        ("", 0),
        ("call_id\n", 0),
    ],
)
def test_count_ids_counts_the_rows_a_file_holds(tmp_path: Path, text: str, expected: int) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(text, encoding="utf-8")
    assert count_ids([str(path), str(path)]) == 2 * expected


def test_count_ids_is_unknown_for_stdin_and_missing_files(tmp_path: Path) -> None:
    assert count_ids(["-"]) is None
    assert count_ids([str(tmp_path / "missing.csv")]) is None


def test_count_ids_reads_a_file_without_line_breaks_in_bounded_memory(tmp_path: Path) -> None:
    """A 300 MB file with no newline once took RSS to ~680 MB: its first line was read whole."""
    path = tmp_path / "one-line.txt"
    with path.open("wb") as handle:
        for _ in range(32):
            handle.write(b"x" * (1 << 20))
    tracemalloc.start()
    try:
        assert count_ids([str(path)]) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_a_status_column_marks_the_calls_never_answered_and_nothing_else() -> None:
    """A `list` export's `status`: not_picked, busy and failed calls have no recording (run
    settles them without a request); any other value, empty, or a short row: asked as usual."""
    from archiver.osvi.listing import CALL_FIELDS

    rest = "," * (len(CALL_FIELDS) - 3)  # the export's other columns, empty

    def row(call_id: str, status: str) -> str:
        return f'{call_id},"Smith, J",{status}{rest}\n'

    header = ",".join(("call_id", "agent_name", "status", *CALL_FIELDS[1:2], *CALL_FIELDS[6:]))
    text = (
        header + "\n"
        + row(A, "busy") + row(B, "picked") + row(C, " not_picked ")
        + row(A.upper(), "BUSY")  # not the API's spelling: asked
        + f"{B},x\n"  # no status cell
    )  # fmt: skip
    items = [item for item in read(text.encode()) if isinstance(item, CallId)]
    assert [item.unanswered for item in items] == ["busy", None, "not_picked", None, None]


@pytest.mark.parametrize(
    "header",
    [
        "id,other,status",  # any CSV with a status column: a CRM's, say
        "call_id,status,path,bytes,sha256,error_kind",  # the manifest's export: failed = ours
        "call_id,status,agent_uuid,call_type,call_ended_reason,call_picked_at,sha256",
    ],
)
def test_only_a_list_exports_status_column_is_read(header: str) -> None:
    columns = header.split(",")
    cells = [A if name in ("id", "call_id") else "" for name in columns]
    cells[columns.index("status")] = "failed"
    items = read(f"{header}\n{','.join(cells)}\n".encode())
    assert [getattr(item, "unanswered", "?") for item in items] == [None]


def test_without_a_status_column_no_call_is_marked() -> None:
    items = read(f"id,other\n{A},busy\n".encode())
    assert [getattr(item, "unanswered", "?") for item in items] == [None]
    assert [item.unanswered for item in read(f"status\n{A}\n".encode(), "status")] == [None]  # type: ignore[union-attr]
