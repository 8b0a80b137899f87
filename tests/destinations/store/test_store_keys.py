"""Keys the store client cannot parse (issue 21): where a listing goes on past them, and how
the key is read from the client's error."""

from __future__ import annotations

import pytest
from obstore.exceptions import InvalidPathError

from archiver.destinations.store.client import bad_key, key_after


@pytest.mark.parametrize(
    ("key", "after"),
    [
        ("a//b", "a/0"),
        ("/x", "0"),
        ("x/../y", "x/..0"),
        ("x/./y", "x/.0"),
        ("d/.", "d/. "),
        ("d/..", "d/.. "),
        ('q"x\x01y', 'q"x '),
        ("runs/r\x7fz.json", "runs/r\x80"),
        ("a/b/c//", "a/b/c/0"),
    ],
)
def test_a_listing_goes_on_after_an_invalid_key_and_all_that_share_its_invalid_part(
    key: str, after: str
) -> None:
    assert key_after(key) == after
    assert after > key
    # every key that shares the invalid part sorts before `after`
    assert key + "zzz" < after or key.endswith((".", ".."))


def test_the_invalid_key_is_read_from_the_clients_error_whatever_it_holds() -> None:
    text = (
        'Encountered object with invalid path: Error parsing Path "p/q"x\x01"\n\nDebug source:\n'
        'InvalidPath {\n    source: BadSegment {\n        path: "p/q\\"x\\u{1}",\n'
        '        source: InvalidPart {\n            segment: "q\\"x\\u{1}",\n        },\n    },\n}'
    )
    assert bad_key(InvalidPathError(text), "p") == 'q"x\x01'
    assert bad_key(InvalidPathError('path: "p/a//b"'), "p") == "a//b"
    assert bad_key(InvalidPathError('path: "elsewhere/a//b"'), "p") is None
    assert bad_key(InvalidPathError("no path at all"), "") is None
