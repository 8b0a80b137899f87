"""What is shown of a text the tool did not write: secrets masked first, then cut; control
characters escaped; presigned queries hidden."""

from __future__ import annotations

import json

import pytest

from archiver import redaction

SECRET = "Tk3n-9xQ-r4nd0m!"


@pytest.fixture(autouse=True)
def registered() -> None:
    redaction.add_secret(SECRET)


def test_a_secret_is_masked_wherever_it_appears() -> None:
    assert redaction.scrub(f"token={SECRET}; again {SECRET}") == "token=***; again ***"


def test_a_secret_as_json_escapes_it_is_masked_too() -> None:
    quoted = 'quote"back\\slash-secret'
    redaction.add_secret(quoted)
    assert quoted not in redaction.scrub(json.dumps({"echo": quoted}))
    assert "***" in redaction.scrub(json.dumps({"echo": quoted}))


@pytest.mark.parametrize("lead", range(270, 305))
def test_shorten_masks_before_it_cuts(lead: int) -> None:
    shown = redaction.shorten("x" * lead + SECRET + "y" * 50, 300)
    assert len(shown) <= 300
    assert not any(SECRET[:n] in shown for n in range(3, len(SECRET) + 1))


def test_presigned_queries_are_hidden() -> None:
    text = "GET https://b.s3.amazonaws.com/a.mp4?X-Amz-Signature=abc failed"
    assert redaction.scrub(text) == "GET https://b.s3.amazonaws.com/a.mp4?<query hidden> failed"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("red \x1b[31mALERT\x1b[0m", "red \\x1b[31mALERT\\x1b[0m"),
        ("title \x1b]0;owned\x07", "title \\x1b]0;owned\\x07"),
        ("over\rwrite", "over\\rwrite"),
        ("two\nlines", "two\\nlines"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("csi \x9b31m", "csi \\x9b31m"),
        ("café ünïcode ok", "café ünïcode ok"),
    ],
)
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert redaction.scrub(text) == shown


def test_newlines_can_be_kept_for_multi_line_messages() -> None:
    assert redaction.scrub("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


def test_a_very_short_secret_does_not_deface_every_text() -> None:
    redaction.add_secret("x")
    assert redaction.scrub("execute") == "execute"
