"""The `layout` template (§3, §8): checked once when the settings are read, then rendered into
one call's path inside the archive. Pure: strings in, a relative path out.

A field a call does not have (the API may send any field but `call_id` as null: a call with no
`agent_uuid`, or no `call_picked_at` nor `created_at`) renders as `unknown`, so such a call is
still archived (under `unknown/…`) rather than stopping the run; its manifest entry says where.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import PurePosixPath

FIELDS = ("call_id", "ext", "yyyy", "mm", "dd", "agent_uuid")
# Known only from a listing item or `GET /v1/call/{id}`.
LISTING_FIELDS = frozenset({"yyyy", "mm", "dd", "agent_uuid"})
UNKNOWN = "unknown"
DEFAULT = "{call_id}{ext}"


def placeholders(layout: str) -> list[str]:
    """The fields `layout` uses, in order; ValueError when it is malformed or names others."""
    try:
        parsed = list(string.Formatter().parse(layout))
    except ValueError as exc:
        raise ValueError(f"layout {layout!r} has unbalanced braces ({exc})") from None
    names = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            known = ", ".join(f"{{{f}}}" for f in FIELDS)
            raise ValueError(f"layout {layout!r}: unknown placeholder {{{name}}}; use {known}")
        if spec or conversion:
            raise ValueError(f"layout {layout!r}: {{{name}}} takes no format spec or conversion")
        names.append(name)
    return names


def check(layout: str) -> str:
    """`layout` when it always gives a path inside the archive, one file per call."""
    names = placeholders(layout)
    if "call_id" not in names:
        raise ValueError(f"layout {layout!r} must contain {{call_id}}, so every call has its file")
    if not layout.endswith("{ext}") or names.count("ext") != 1:
        raise ValueError(f"layout {layout!r} must end with {{ext}}, once")
    parts = layout.split("/")
    if "\\" in layout or "\0" in layout or parts[0] == "":
        raise ValueError(f"layout {layout!r} must be a relative path with `/` separators")
    if any(part in ("", ".", "..") for part in parts) or parts[-1] == "{ext}":
        raise ValueError(
            f"layout {layout!r} has an empty, `.` or `..` part: it must stay in out_dir"
        )
    return layout


def needs_listing_fields(layout: str) -> bool:
    """Whether the layout uses fields known only from a listing or `GET /v1/call/{id}`."""
    return not LISTING_FIELDS.isdisjoint(placeholders(layout))


def render(layout: str, fields: Mapping[str, str]) -> PurePosixPath:
    """One call's relative path. `fields` holds call_id and ext, and the listing fields that
    are known (only values safe in a path: listing.layout_fields_of); the others are UNKNOWN.

    A result outside the archive cannot come from a checked layout and such fields: should it
    happen anyway, ValueError (a bug, which fails that one call)."""
    values = {name: UNKNOWN for name in LISTING_FIELDS} | {k: v for k, v in fields.items() if v}
    text = layout.format_map(values)
    path = PurePosixPath(text)
    if path.is_absolute() or not text or any(p in ("", ".", "..") for p in text.split("/")):
        raise ValueError(f"layout {layout!r} gives {text!r}, which is not inside the archive")
    return path
