"""The fake service's pure parts, with plain values: signing, fault choice, bodies, options."""

from __future__ import annotations

import argparse
import hashlib
from functools import cache
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.fake import FakeConfig, Fault, FaultKind, parse_fault
from archiver.fake.calls import FTYP, RecordingBody
from archiver.fake.config import HOSTILE, MIN_SIZE
from archiver.fake.options import add_arguments, config_from_args, parse_size
from archiver.fake.signing import UrlCheck, check, presign

KEY = b"k" * 32
ORIGIN = "http://127.0.0.1:9"
PATH = "/recordings/0b6e7c2e-5d7b-4a53-9b51-7c2f1f0f6d10.mp4"
ISSUED = 1_780_000_000.25


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- signing -------------------------------------------------------------------------------


def test_presigned_url_is_on_the_origin_and_path_with_the_sigv4_query_names() -> None:
    url = presign(KEY, ORIGIN, PATH, ISSUED, 900)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == ORIGIN
    assert parts.path == PATH
    query = _query(url)
    assert set(query) == {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    }
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "900"
    assert len(query["X-Amz-Signature"]) == 64


def test_presigned_url_is_accepted_through_the_last_instant_of_its_lifetime() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    assert check(KEY, PATH, query, ISSUED) is UrlCheck.OK
    assert check(KEY, PATH, query, ISSUED + 899.9) is UrlCheck.OK
    assert check(KEY, PATH, query, ISSUED + 900) is UrlCheck.OK


def test_presigned_url_is_expired_just_after_its_lifetime() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    assert check(KEY, PATH, query, ISSUED + 900.001) is UrlCheck.EXPIRED
    assert check(KEY, PATH, query, ISSUED + 86_400) is UrlCheck.EXPIRED


def test_one_second_url_expires_after_one_second_not_earlier() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 1))
    assert check(KEY, PATH, query, ISSUED + 0.999) is UrlCheck.OK
    assert check(KEY, PATH, query, ISSUED + 1.001) is UrlCheck.EXPIRED


def test_tampered_signature_is_a_bad_signature() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    last = query["X-Amz-Signature"][-1]
    query["X-Amz-Signature"] = query["X-Amz-Signature"][:-1] + ("0" if last != "0" else "1")
    assert check(KEY, PATH, query, ISSUED) is UrlCheck.BAD_SIGNATURE


def test_forged_longer_expiry_on_an_expired_url_reads_as_bad_signature_not_expired() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    query["X-Amz-Expires"] = "604800"
    assert check(KEY, PATH, query, ISSUED + 1000) is UrlCheck.BAD_SIGNATURE


def test_signature_is_bound_to_path_date_and_key() -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    assert check(KEY, PATH.replace("0b6e", "1b6e"), query, ISSUED) is UrlCheck.BAD_SIGNATURE
    assert check(b"other-key", PATH, query, ISSUED) is UrlCheck.BAD_SIGNATURE
    later = _query(presign(KEY, ORIGIN, PATH, ISSUED + 60, 900))
    mixed = {**query, "X-Amz-Date": later["X-Amz-Date"]}
    assert check(KEY, PATH, mixed, ISSUED) is UrlCheck.BAD_SIGNATURE


@pytest.mark.parametrize(
    "broken",
    [
        {"X-Amz-Signature": None},
        {"X-Amz-Date": None},
        {"X-Amz-Expires": None},
        {"X-Amz-Expires": "soon"},
        {"X-Amz-Date": "20260101T000000Z"},
    ],
    ids=["no-signature", "no-date", "no-expires", "word-expires", "date-without-fraction"],
)
def test_missing_or_garbled_query_is_a_bad_signature(broken: dict[str, str | None]) -> None:
    query = _query(presign(KEY, ORIGIN, PATH, ISSUED, 900))
    for name, value in broken.items():
        if value is None:
            del query[name]
        else:
            query[name] = value
    assert check(KEY, PATH, query, ISSUED) is UrlCheck.BAD_SIGNATURE


# --- Fault.hits ----------------------------------------------------------------------------

SUBJECTS = [f"call-{n}" for n in range(10_000)]


def _hit(fault: Fault, seed: int = 1, kind: FaultKind = FaultKind.RESET) -> set[str]:
    return {s for s in SUBJECTS if fault.hits(seed, kind, s)}


def test_fault_hits_the_same_subjects_for_the_same_seed_and_kind() -> None:
    fault = Fault(rate=0.2)
    assert _hit(fault) == _hit(Fault(rate=0.2))


def test_fault_hits_other_subjects_for_another_seed_or_kind() -> None:
    fault = Fault(rate=0.2)
    assert _hit(fault, seed=2) != _hit(fault)
    assert _hit(fault, kind=FaultKind.CUT) != _hit(fault)


@pytest.mark.parametrize("rate", [0.01, 0.3, 0.75])
def test_fault_hits_about_its_rate_of_subjects(rate: float) -> None:
    share = len(_hit(Fault(rate=rate))) / len(SUBJECTS)
    assert rate * 0.85 <= share <= rate * 1.15


def test_higher_rate_hits_a_superset_of_a_lower_rate() -> None:
    assert _hit(Fault(rate=0.1)) < _hit(Fault(rate=0.4))


def test_fault_rate_zero_hits_nothing_and_rate_one_hits_everything() -> None:
    assert _hit(Fault(rate=0.0)) == set()
    assert _hit(Fault(rate=1.0)) == set(SUBJECTS)


def test_fault_always_hits_its_listed_calls_whatever_the_rate() -> None:
    fault = Fault(rate=0.0, calls=frozenset({"call-7", "call-9"}))
    assert _hit(fault) == {"call-7", "call-9"}


@pytest.mark.parametrize(("rate", "times"), [(-0.1, 1), (1.01, 1), (0.5, 0), (0.5, -3)], ids=str)
def test_fault_refuses_a_rate_outside_0_1_or_times_below_1(rate: float, times: int) -> None:
    with pytest.raises(ValueError, match="fault"):
        Fault(rate=rate, times=times)


# --- parse_fault ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "fault"),
    [
        ("reset=0.3", FaultKind.RESET, Fault(rate=0.3, times=1)),
        ("api-429=1:3", FaultKind.API_429, Fault(rate=1.0, times=3)),
        ("stall=0.5:always", FaultKind.STALL, Fault(rate=0.5, times=None)),
        (" not-audio =0", FaultKind.NOT_AUDIO, Fault(rate=0.0, times=1)),
        ("pending=1", FaultKind.PENDING, Fault(rate=1.0)),
    ],
)
def test_parse_fault_reads_kind_rate_and_times(spec: str, kind: FaultKind, fault: Fault) -> None:
    assert parse_fault(spec) == (kind, fault)


def test_parse_fault_knows_every_kind_by_its_value() -> None:
    for kind in FaultKind:
        assert parse_fault(f"{kind.value}=1") == (kind, Fault(rate=1.0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus=1", "unknown kind 'bogus' (known: api-500, api-503, api-429, rec-500"),
        ("reset", "expected KIND=RATE[:TIMES]"),
        ("reset=lots", "could not convert"),
        ("reset=1.5", "rate must be within 0..1"),
        ("reset=0.5:0", "times must be >= 1"),
        ("reset=0.5:twice", "invalid literal"),
    ],
)
def test_parse_fault_refuses_bad_specs_naming_the_spec(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="fault") as caught:
        parse_fault(spec)
    assert repr(spec) in str(caught.value)
    assert message in str(caught.value)


# --- RecordingBody -------------------------------------------------------------------------

BODY_SIZE = 600_000  # over two of the payload's repeating blocks
CALL_ID = "3f1c1c5e-8a7a-4c38-9a34-2f8d52cb7d01"


@cache
def _whole(size: int = BODY_SIZE, seed: int = 1, call_id: str = CALL_ID) -> bytes:
    return RecordingBody(seed, call_id, size).read(0, size)


def test_body_starts_with_an_mp4_ftyp_box_and_an_mdat_box_covering_the_rest() -> None:
    whole = _whole()
    assert len(whole) == BODY_SIZE
    assert whole.startswith(FTYP)
    mdat = len(FTYP)
    assert whole[mdat + 4 : mdat + 8] == b"mdat"
    assert int.from_bytes(whole[mdat : mdat + 4], "big") == BODY_SIZE - len(FTYP)


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=BODY_SIZE + 10),
    length=st.integers(min_value=0, max_value=BODY_SIZE + 10),
)
def test_body_read_at_any_offset_equals_the_slice_of_the_whole(start: int, length: int) -> None:
    body = RecordingBody(1, CALL_ID, BODY_SIZE)
    assert body.read(start, length) == _whole()[start : start + length]


@pytest.mark.parametrize(
    "start",
    [0, 1, 27, 28, 35, 36, 37, 36 + 262_138, 36 + 262_139, 36 + 262_140, 2 * 262_139 + 36],
)
def test_body_read_across_header_and_block_boundaries_equals_the_slice(start: int) -> None:
    body = RecordingBody(1, CALL_ID, BODY_SIZE)
    for length in (1, 7, 4096, 300_000):
        assert body.read(start, length) == _whole()[start : start + length]


def test_body_read_in_chunks_reassembles_the_whole() -> None:
    body = RecordingBody(1, CALL_ID, BODY_SIZE)
    chunks = [body.read(offset, 65_521) for offset in range(0, BODY_SIZE, 65_521)]
    assert b"".join(chunks) == _whole()


def test_body_read_past_the_end_is_empty() -> None:
    body = RecordingBody(1, CALL_ID, BODY_SIZE)
    assert body.read(BODY_SIZE, 10) == b""
    assert body.read(BODY_SIZE + 5, 10) == b""


def test_smallest_body_is_readable_and_exact() -> None:
    body = RecordingBody(1, CALL_ID, MIN_SIZE)
    whole = body.read(0, 10_000)
    assert len(whole) == MIN_SIZE
    assert whole.startswith(FTYP)
    assert b"".join(body.read(n, 1) for n in range(MIN_SIZE)) == whole


def test_body_digests_are_of_the_whole_body() -> None:
    body = RecordingBody(1, CALL_ID, BODY_SIZE)
    assert body.md5_hex() == hashlib.md5(_whole(), usedforsecurity=False).hexdigest()
    assert body.sha256_hex() == hashlib.sha256(_whole()).hexdigest()


def test_body_bytes_depend_on_seed_and_call_only() -> None:
    again = RecordingBody(1, CALL_ID, BODY_SIZE).read(0, BODY_SIZE)
    assert again == _whole()
    other_seed = _whole(seed=2)
    other_call = _whole(call_id="9d4a1e0c-0000-4000-8000-000000000000")
    head = len(FTYP) + 8
    assert other_seed[head:] != _whole()[head:]
    assert other_call[head:] != _whole()[head:]


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4096", 4096),
        ("0", 0),
        ("10b", 10),
        ("64KiB", 64 * 1024),
        ("64kb", 64 * 1024),
        ("1.5k", 1536),
        ("16M", 16 * 1024**2),
        (" 2 MiB ", 2 * 1024**2),
        ("1GiB", 1024**3),
        ("1g", 1024**3),
    ],
)
def test_parse_size_reads_bytes_and_binary_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "KiB", "-1", "1.2.3", "12 parsecs", "5 kilobytes"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        parse_size(text)


def _parse(argv: list[str]) -> FakeConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_fake_server_defaults_are_a_healthy_default_config() -> None:
    assert _parse([]) == FakeConfig()


def test_fake_server_flags_set_every_knob() -> None:
    config = _parse(
        [
            *("--calls", "7", "--seed", "9", "--token", "abcdefghijklmnop", "--days", "2.5"),
            *("--size-min", "1KiB", "--size-max", "2MiB", "--api-latency", "0.1"),
            *("--download-latency", "0.2", "--bandwidth", "512KiB", "--url-lifetime", "60"),
            *("--retry-after", "Wed, 21 Oct 2026 07:28:00 GMT", "--stall-seconds", "3"),
            *("--pending-requests", "4", "--ignore-range", "--no-content-type"),
            *("--multipart-etag", "--fault", "reset=0.5:always", "--fault", "api-429=1:2"),
        ]
    )
    assert config == FakeConfig(
        calls=7,
        seed=9,
        token="abcdefghijklmnop",
        days=2.5,
        size_min=1024,
        size_max=2 * 1024**2,
        api_latency=0.1,
        download_latency=0.2,
        bandwidth=512 * 1024,
        url_lifetime=60,
        retry_after="Wed, 21 Oct 2026 07:28:00 GMT",
        stall_seconds=3.0,
        pending_requests=4,
        ignore_range=True,
        content_type=None,
        multipart_etag=True,
        faults={
            FaultKind.RESET: Fault(rate=0.5, times=None),
            FaultKind.API_429: Fault(rate=1.0, times=2),
        },
    )


def test_all_faults_sets_every_request_fault_and_a_named_fault_overrides_it() -> None:
    """Not the hostile ones (a trickle, an endless body, ...): those are asked for by name."""
    config = _parse(["--all-faults", "0.2", "--fault", "cut=0.9"])
    request_faults = set(FaultKind) - {FaultKind.NOT_AVAILABLE, FaultKind.PENDING} - HOSTILE
    assert set(config.faults) == request_faults
    assert config.faults[FaultKind.CUT] == Fault(rate=0.9)
    assert all(config.faults[k] == Fault(rate=0.2) for k in request_faults - {FaultKind.CUT})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("calls", -1, "calls must be >= 0"),
        ("size_min", 10, "size_min"),
        ("url_lifetime", 0, "url_lifetime"),
    ],
)
def test_fake_config_refuses_impossible_values(field: str, value: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FakeConfig(**{field: value})  # type: ignore[arg-type]
