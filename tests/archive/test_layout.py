"""The layout template: checked once, rendered per call, `unknown` for what a call lacks."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from archiver.archive import layout

A = "3f2a9c1e-7b4d-4e8a-9c2f-1a2b3c4d5e6f"
FIELDS = {"call_id": A, "ext": ".mp4", "yyyy": "2026", "mm": "11", "dd": "05"}


def test_the_default_is_call_id_and_extension() -> None:
    assert layout.render(layout.DEFAULT, FIELDS) == PurePosixPath(f"{A}.mp4")


def test_nested_by_year_and_month() -> None:
    path = layout.render("{yyyy}/{mm}/{call_id}{ext}", FIELDS)
    assert path.parts == ("2026", "11", f"{A}.mp4")


def test_a_field_the_call_does_not_have_renders_as_unknown() -> None:
    assert layout.render("{agent_uuid}/{call_id}{ext}", FIELDS) == PurePosixPath(f"unknown/{A}.mp4")
    no_date = {"call_id": A, "ext": ".mp4"}
    assert layout.render("{yyyy}/{mm}/{dd}/{call_id}{ext}", no_date) == PurePosixPath(
        f"unknown/unknown/unknown/{A}.mp4"
    )


def test_an_empty_field_renders_as_unknown_too() -> None:
    path = layout.render("{yyyy}/{agent_uuid}/{call_id}{ext}", {**FIELDS, "agent_uuid": ""})
    assert path == PurePosixPath(f"2026/unknown/{A}.mp4")


def test_a_field_value_that_climbs_out_is_refused_as_a_bug() -> None:
    with pytest.raises(ValueError, match="not inside the archive"):
        layout.render("{agent_uuid}/{call_id}{ext}", {**FIELDS, "agent_uuid": "../../etc"})


def test_a_layout_without_its_call_id_value_is_a_bug() -> None:
    with pytest.raises(KeyError):
        layout.render("{call_id}{ext}", {"ext": ".mp4"})


@pytest.mark.parametrize(
    "text",
    [
        "{call_id}{ext}",
        "{yyyy}/{mm}/{dd}/{call_id}{ext}",
        "{agent_uuid}/{yyyy}-{mm}/{call_id}{ext}",
        "recordings/{call_id}{ext}",
    ],
)
def test_layouts_inside_the_archive_pass_the_check(text: str) -> None:
    assert layout.check(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/{call_id}{ext}", "relative path"),
        ("../{call_id}{ext}", r"`\.\.` part"),
        ("{yyyy}/./{call_id}{ext}", r"`\.` or `\.\.` part"),
        ("{yyyy}//{call_id}{ext}", "empty"),
        ("{yyyy}/{ext}", "call_id"),
        ("{call_id}", r"end with \{ext\}"),
        ("{call_id}{ext}{ext}", "once"),
        ("{home}/{call_id}{ext}", r"unknown placeholder \{home\}"),
        ("{call_id!r}{ext}", "no format spec"),
        ("{call_id{ext}", "braces"),
        ("a\\b/{call_id}{ext}", "relative path"),
    ],
)
def test_unsafe_or_malformed_layouts_fail_the_check(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        layout.check(text)


def test_which_layouts_need_the_listing_fields() -> None:
    assert set(layout.FIELDS) == {"call_id", "ext", "yyyy", "mm", "dd", "agent_uuid"}
    assert not layout.needs_listing_fields("{call_id}{ext}")
    assert layout.needs_listing_fields("{yyyy}/{call_id}{ext}")
    assert layout.needs_listing_fields("{agent_uuid}/{call_id}{ext}")
