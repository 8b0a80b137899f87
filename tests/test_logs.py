from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from archiver.logs import Redactor, setup_logging

TOKEN = "osvi_live_9f8e7d6c5b4a"
PRESIGNED = (
    "https://bucket.s3.amazonaws.com/rec/a.mp4?X-Amz-Credential=AKIAEXAMPLE"
    "&X-Amz-Signature=5ec7e75167"
)
SECRETS = (TOKEN, "AKIAEXAMPLE", "5ec7e75167")


@dataclass
class Captured:
    logger: logging.Logger
    stream: io.StringIO

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    """A logger of our own whose one handler carries the redactor, as setup_logging does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(Redactor([TOKEN]))
    logger = logging.getLogger("tests.logs.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield Captured(logger, stream)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


@pytest.fixture
def restored_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    archiver_logger = logging.getLogger("archiver")
    handlers, level, archiver_level = list(root.handlers), root.level, archiver_logger.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        archiver_logger.setLevel(archiver_level)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# Redactor.redact


def test_redact_replaces_the_token() -> None:
    assert Redactor([TOKEN]).redact(f"sent API-Token: {TOKEN} twice {TOKEN}") == (
        "sent API-Token: *** twice ***"
    )


def test_redact_drops_url_query_strings_but_keeps_the_path() -> None:
    text = Redactor([]).redact(f"GET {PRESIGNED} failed")
    assert text == "GET https://bucket.s3.amazonaws.com/rec/a.mp4?<query hidden> failed"


def test_redact_handles_several_urls_and_quotes() -> None:
    text = Redactor([]).redact(f"'{PRESIGNED}' then \"http://127.0.0.1:9/x.wav?sig=abc\"")
    assert text == (
        "'https://bucket.s3.amazonaws.com/rec/a.mp4?<query hidden>' then "
        '"http://127.0.0.1:9/x.wav?<query hidden>"'
    )


def test_redact_leaves_plain_text_and_query_free_urls_alone() -> None:
    text = "archived https://api.osvi.ai/v1/call/abc in 2.0 s? yes"
    assert Redactor([TOKEN]).redact(text) == text


def test_redact_ignores_empty_secrets() -> None:
    assert Redactor(["", TOKEN]).redact("abc") == "abc"


# Redactor as a logging filter


def test_filter_redacts_the_message(captured: Captured) -> None:
    captured.logger.warning(f"token {TOKEN} at {PRESIGNED}")
    assert captured.text() == (
        "WARNING token *** at https://bucket.s3.amazonaws.com/rec/a.mp4?<query hidden>\n"
    )


def test_filter_redacts_percent_args(captured: Captured) -> None:
    captured.logger.info("call %s via %s with %r", "abc", PRESIGNED, {"API-Token": TOKEN})
    text = captured.text()
    assert_no_secret(text)
    assert text == (
        "INFO call abc via https://bucket.s3.amazonaws.com/rec/a.mp4?<query hidden> "
        "with {'API-Token': '***'}\n"
    )


def test_filter_redacts_exception_tracebacks(captured: Captured) -> None:
    try:
        raise RuntimeError(f"request with token {TOKEN} to {PRESIGNED} failed")
    except RuntimeError:
        captured.logger.exception("download of %s failed", "abc")
    text = captured.text()
    assert_no_secret(text)
    assert text.startswith("ERROR download of abc failed\nTraceback (most recent call last):")
    assert "RuntimeError: request with token *** to " in text
    assert "a.mp4?<query hidden> failed" in text


def test_filter_redacts_chained_exception_tracebacks(captured: Captured) -> None:
    try:
        try:
            raise ValueError(f"inner {TOKEN}")
        except ValueError as inner:
            raise RuntimeError(f"outer {PRESIGNED}") from inner
    except RuntimeError:
        captured.logger.exception("failed")
    text = captured.text()
    assert_no_secret(text)
    assert "ValueError: inner ***" in text
    assert "The above exception was the direct cause" in text


def test_filter_keeps_every_record(captured: Captured) -> None:
    for n in range(3):
        captured.logger.debug("line %d", n)
    assert captured.text().splitlines() == ["DEBUG line 0", "DEBUG line 1", "DEBUG line 2"]


# setup_logging


@pytest.mark.usefixtures("restored_root_logging")
def test_setup_logging_redacts_every_record_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [TOKEN])
    logging.getLogger("aiohttp.client").warning("retrying %s with %s", PRESIGNED, TOKEN)
    logging.getLogger("archiver.api").debug("hidden at INFO")
    err = capsys.readouterr().err
    assert_no_secret(err)
    assert "retrying https://bucket.s3.amazonaws.com/rec/a.mp4?<query hidden> with ***" in err
    assert "hidden at INFO" not in err


@pytest.mark.usefixtures("restored_root_logging")
def test_setup_logging_replaces_earlier_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [TOKEN])
    setup_logging("DEBUG", [TOKEN])
    logging.getLogger("archiver.x").debug("once")
    assert capsys.readouterr().err.count("once") == 1
