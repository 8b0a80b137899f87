from __future__ import annotations

import pytest

from archiver.transfer.audio import SNIFF_LEN, container_of, extension, is_audio, media_type

MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"
M4A = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00"
WAV = b"RIFF\x24\x08\x00\x00WAVEfmt "
OGG = b"OggS\x00\x02\x00\x00\x00\x00\x00\x00"
FLAC = b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00"
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81"
AMR = b"#!AMR\n\x3c\x48\xf5\x1f\x96\x66"
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x21TIT"
MP3_FRAME = b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00"
MP3_MPEG2_FRAME = b"\xff\xf3\x48\xc4\x00\x00\x00\x00\x00\x00\x00\x00"
AAC_ADTS_MPEG4 = b"\xff\xf1\x50\x80\x2e\x7f\xfc\x00\x00\x00\x00\x00"
AAC_ADTS_MPEG2 = b"\xff\xf9\x50\x80\x2e\x7f\xfc\x00\x00\x00\x00\x00"
HTML = b"<!DOCTYPE html><html>"
JSON = b'{"success": false}'
XML = b'<?xml version="1.0"?><Error>'


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (MP4, ".mp4"),
        (M4A, ".m4a"),
        (WAV, ".wav"),
        (OGG, ".ogg"),
        (FLAC, ".flac"),
        (WEBM, ".webm"),
        (AMR, ".amr"),
        (MP3_ID3, ".mp3"),
        (MP3_FRAME, ".mp3"),
        (MP3_MPEG2_FRAME, ".mp3"),
        (AAC_ADTS_MPEG4, ".aac"),
        (AAC_ADTS_MPEG2, ".aac"),
    ],
)
def test_container_of_recognises_each_audio_container(head: bytes, expected: str) -> None:
    assert container_of(head) == expected


def test_every_sample_fits_in_the_sniffed_length() -> None:
    # The downloader reads SNIFF_LEN bytes before deciding; the samples above must be decidable.
    assert SNIFF_LEN >= 12
    assert container_of(WAV[:SNIFF_LEN]) == ".wav"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff",
        HTML,
        JSON,
        XML,
        b"\x00" * 12,
        b"RIFF\x24\x08\x00\x00AVI LIST",  # RIFF, but video, not WAVE
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",  # JPEG starts with 0xFF but is no frame sync
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00\x00\x00",
    ],
)
def test_container_of_is_none_for_unknown_magic(head: bytes) -> None:
    assert container_of(head) is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("audio/mp4", "audio/mp4"),
        ("Audio/MP4; charset=binary", "audio/mp4"),
        ("  audio/mpeg ;x=y", "audio/mpeg"),
        (None, ""),
        ("", ""),
    ],
)
def test_media_type_drops_parameters_and_case(content_type: str | None, expected: str) -> None:
    assert media_type(content_type) == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "text/plain",
        "application/json",
        "application/json; charset=utf-8",
        "application/xml",
        "application/xhtml+xml",
    ],
)
@pytest.mark.parametrize("head", [MP4, MP3_FRAME, WAV])
def test_is_audio_is_false_for_page_and_api_types_even_with_audio_bytes(
    content_type: str, head: bytes
) -> None:
    assert is_audio(head, content_type) is False


@pytest.mark.parametrize("content_type", [None, "audio/mp4", "application/octet-stream"])
@pytest.mark.parametrize("head", [HTML, JSON, XML, b"\x00" * 12])
def test_is_audio_is_false_for_unknown_magic_whatever_the_type(
    content_type: str | None, head: bytes
) -> None:
    assert is_audio(head, content_type) is False


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        ("audio/mp4", MP4),
        (None, MP4),
        ("application/octet-stream", MP3_FRAME),
        ("binary/octet-stream", OGG),
        ("audio/mpeg", MP3_ID3),
    ],
)
def test_is_audio_is_true_for_audio_bytes_under_a_neutral_or_audio_type(
    content_type: str | None, head: bytes
) -> None:
    assert is_audio(head, content_type) is True


def test_extension_prefers_content_type_over_magic_and_url() -> None:
    assert extension("audio/mpeg", MP4, "/rec/call.wav") == ".mp3"


def test_extension_ignores_content_type_parameters_and_case() -> None:
    assert extension("Audio/X-WAV; codec=1", OGG, "/rec/call.ogg") == ".wav"


def test_extension_falls_back_to_magic_when_content_type_is_not_audio() -> None:
    assert extension("application/octet-stream", OGG, "/rec/call.wav") == ".ogg"


def test_extension_falls_back_to_magic_when_content_type_is_missing() -> None:
    assert extension(None, M4A, "/rec/call.mp4") == ".m4a"


def test_extension_falls_back_to_url_suffix_when_type_and_magic_say_nothing() -> None:
    assert extension("application/octet-stream", b"\x00" * 12, "/rec/CALL.WAV") == ".wav"


def test_extension_ignores_a_url_suffix_that_is_not_audio() -> None:
    assert extension(None, b"\x00" * 12, "/rec/call.exe") == ".bin"


def test_extension_is_bin_when_nothing_says() -> None:
    assert extension(None, b"", "/rec/call") == ".bin"
