"""What a call id is: a UUID, in any case, perhaps quoted; canonical in lower case. Ids become
paths only in this canonical form (§8)."""

from __future__ import annotations

import re

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I | re.A)


def unquote(text: str) -> str:
    """A CSV cell without the quotes and spaces around it."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def canonical_uuid(text: str) -> str | None:
    """The id in lower case when `text` is a UUID (quotes and spaces around it allowed)."""
    value = unquote(text)
    return value.lower() if _UUID.fullmatch(value) else None
