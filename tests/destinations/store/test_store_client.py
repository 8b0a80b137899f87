"""What the store's failures say to a user (storeerrors.reason): one short line, no dump."""

from __future__ import annotations

from archiver.destinations.store.client import reason

DUMP = '\n\nDebug source:\nGeneric {\n    store: "S3",\n}'


def test_s3s_error_code_and_message_are_what_is_said() -> None:
    text = ("Generic S3 error: Error performing PUT http://h/b/k in 2ms - Server returned "
            "non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?><Error><Code>"
            "NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
            "</Error>" + DUMP)  # fmt: skip
    said = reason(RuntimeError(text))
    assert said == "NoSuchBucket: The specified bucket does not exist (does the bucket exist?)"


def test_missing_credentials_are_named_as_such() -> None:
    text = ("Generic S3 error: Error performing token request: Error performing GET "
            "http://169.254.169.254/latest/api/token in 1ms - Server returned non-2xx status "
            "code: 403 Forbidden" + DUMP)  # fmt: skip
    assert reason(RuntimeError(text)).startswith("no credentials for the store were found")


def test_no_connection_is_named_as_such() -> None:
    text = ("Generic S3 error: Error performing PUT http://127.0.0.1:9/b/k?<query hidden> in "
            "2.4s, after 10 retries - HTTP error: error sending request" + DUMP)  # fmt: skip
    assert reason(RuntimeError(text)).startswith("no connection to the store")


def test_anything_else_is_its_first_line_only() -> None:
    said = reason(RuntimeError("Generic error: something odd" + DUMP))
    assert said == "Generic error: something odd"
    assert "\n" not in said
