"""What the tool shows of any text it did not write itself (§8): secrets masked, presigned URLs
without their query, control characters escaped. Pure, but for the process's set of secrets.

The API token is registered once it is known (`add_secret`: the settings, the API client);
every place that shows a text passes it through `scrub`: log records (logs.Redactor), the
error messages of the manifest and run reports, the summary and fatal errors. A server may
echo the token in an error body, and an error body may carry ANSI escapes meant for a
terminal: both are defused here. `shorten` masks first and cuts after, so that cutting a long
text can never leave a part of a secret behind.
"""

from __future__ import annotations

import json
import re
import unicodedata

MASK = "***"
_secrets: set[str] = set()
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
# Control, format (bidi overrides, zero-width), surrogate and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


MIN_SECRET = 6  # shorter "secrets" (a test's token "x") would deface every line, hide nothing


def add_secret(value: str | None) -> None:
    """Mask `value` in every text shown from now on (also as it appears inside JSON)."""
    if value and len(value) >= MIN_SECRET:
        _secrets.add(value)
        _secrets.add(json.dumps(value)[1:-1])


def mask(text: str) -> str:
    """Secrets become ***, URL queries `?<query hidden>`."""
    for secret in sorted(_secrets, key=len, reverse=True):  # a longer form before its part
        if secret in text:
            text = text.replace(secret, MASK)
    return _URL_QUERY.sub(r"\1?<query hidden>", text)


def escape_controls(text: str, keep: str = "") -> str:
    """Characters that could steer a terminal or hide text (ESC, CR, bidi overrides, ...)
    written as `\\x1b`, `\\u202e`; those in `keep` (say, a newline) left as they are."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c in keep or unicodedata.category(c) not in _UNSAFE_CATEGORIES
        else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def scrub(text: str, *, keep_newlines: bool = False) -> str:
    """A text fit to show: secrets masked, queries hidden, control characters escaped."""
    return escape_controls(mask(text), "\n" if keep_newlines else "")


def shorten(text: str, limit: int) -> str:
    """`scrub(text)`, then at most `limit` characters (an ellipsis marking a cut)."""
    shown = scrub(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
