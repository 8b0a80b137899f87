from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from archiver.monitoring.logs import Redactor, json_mode, setup_logging

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
    logging.getLogger("archiver.osvi.api").debug("hidden at INFO")
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


# setup_logging: JSON Lines, levels, json_mode

JSON_TOKEN = "tok-SECRET-123"
SIGNED_URL = "https://rec.example/a.mp4?X-Amz-Signature=abc"


@pytest.fixture
def reset_logging(restored_root_logging: None) -> Iterator[None]:
    """Back to plain text logs (json_mode off) before the root's handlers are restored."""
    yield
    setup_logging("WARNING", [], "text")


def json_lines(err: str) -> list[dict[str, object]]:
    lines = [line for line in err.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


@pytest.mark.usefixtures("reset_logging")
def test_json_lines_carry_the_fields_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [JSON_TOKEN], "json")
    assert json_mode()
    logging.getLogger("archiver.engine.call").error(
        "call %s failed with %s at %s",
        "abc",
        JSON_TOKEN,
        SIGNED_URL,
        extra={
            "event": "call_failed",
            "call_id": "abc",
            "attempt": 3,
            "status": "failed",
            "error_kind": "http_500",
            "detail": {"url": SIGNED_URL, "headers": {"API-Token": JSON_TOKEN}, "n": 7},
            "seen": [JSON_TOKEN, "plain"],
        },
    )
    err = capsys.readouterr().err
    assert JSON_TOKEN not in err
    assert "X-Amz-Signature" not in err
    [line] = json_lines(err)
    assert list(line)[:8] == [
        "time",
        "level",
        "event",
        "message",
        "call_id",
        "attempt",
        "status",
        "error_kind",
    ]
    time_text = line["time"]
    assert isinstance(time_text, str)
    assert time_text.endswith("Z")
    assert datetime.fromisoformat(time_text.replace("Z", "+00:00")).tzinfo is not None
    assert line["level"] == "ERROR"
    assert line["event"] == "call_failed"
    assert line["message"] == "call abc failed with *** at https://rec.example/a.mp4?<query hidden>"
    assert (line["call_id"], line["attempt"], line["status"], line["error_kind"]) == (
        "abc",
        3,
        "failed",
        "http_500",
    )
    assert line["detail"] == {
        "url": "https://rec.example/a.mp4?<query hidden>",
        "headers": {"API-Token": "***"},
        "n": 7,
    }
    assert line["seen"] == ["***", "plain"]


@pytest.mark.usefixtures("reset_logging")
def test_json_record_without_event_is_named_by_its_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", [JSON_TOKEN], "json")
    logging.getLogger("aiohttp.client").warning("connection to %s lost", SIGNED_URL)
    logging.getLogger().warning("from the root")
    first, second = json_lines(capsys.readouterr().err)
    assert first["event"] == "log.aiohttp.client"
    assert first["level"] == "WARNING"
    assert first["message"] == "connection to https://rec.example/a.mp4?<query hidden> lost"
    assert "call_id" not in first
    assert second["event"] == "log"


@pytest.mark.usefixtures("reset_logging")
def test_json_traceback_is_a_redacted_field(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", [JSON_TOKEN], "json")
    try:
        raise RuntimeError(f"boom {JSON_TOKEN}")
    except RuntimeError:
        logging.getLogger("archiver.engine.lifecycle").exception("failed", extra={"event": "x"})
    err = capsys.readouterr().err
    assert JSON_TOKEN not in err
    [line] = json_lines(err)
    traceback = line["traceback"]
    assert isinstance(traceback, str)
    assert "RuntimeError: boom ***" in traceback


@pytest.mark.usefixtures("reset_logging")
def test_text_at_the_default_level_hides_retries_and_shows_failures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO", [JSON_TOKEN], "text")
    assert not json_mode()
    log = logging.getLogger("archiver.engine.call")
    log.debug("call abc attempt 1: boom; retrying", extra={"event": "retry", "call_id": "abc"})
    log.info("run started", extra={"event": "run_started"})
    log.error("call abc failed after 2 attempts", extra={"event": "call_failed"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    run started", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d ERROR   call abc failed after 2 attempts", lines[1])


@pytest.mark.usefixtures("reset_logging")
def test_verbose_shows_retries(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", [], "text")
    logging.getLogger("archiver.engine.call").debug("call abc attempt 1: boom; retrying")
    assert "DEBUG   call abc attempt 1: boom; retrying" in capsys.readouterr().err


@pytest.mark.usefixtures("reset_logging")
def test_quiet_shows_errors_only(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("ERROR", [], "text")
    log = logging.getLogger("archiver.engine.lifecycle")
    log.info("an info")
    log.warning("a warning")
    log.error("an error")
    logging.getLogger("aiohttp.client").warning("a library's warning")
    err = capsys.readouterr().err
    assert "an info" not in err
    assert "warning" not in err
    assert err.count("\n") == 1
    assert "ERROR   an error" in err


@pytest.mark.usefixtures("reset_logging")
def test_json_mode_follows_the_last_setup() -> None:
    setup_logging("INFO", [], "json")
    assert json_mode()
    setup_logging("INFO", [], "text")
    assert not json_mode()
    setup_logging("INFO", [])
    assert not json_mode()
    setup_logging("INFO", [], "json")
    assert json_mode()


@pytest.mark.usefixtures("reset_logging")
def test_verbose_is_about_this_tool_not_other_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", [], "text")
    logging.getLogger("archiver.call").debug("our retry")
    logging.getLogger("asyncio").debug("Using selector: EpollSelector")
    logging.getLogger("aiohttp.client").warning("a library warning")
    err = capsys.readouterr().err
    assert "our retry" in err
    assert "EpollSelector" not in err
    assert "a library warning" in err


@pytest.mark.usefixtures("reset_logging")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_log_file_gets_every_record_and_is_reopened_after_logrotate_moves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str
) -> None:
    import os

    from archiver.monitoring.logs import write_log_file

    path = tmp_path / "sync.log"
    path.write_text("an earlier run\n")
    setup_logging("INFO", ["s3cr3t-token-value"], log_format, path)
    log = logging.getLogger("archiver.engine.lifecycle")
    log.info("started with s3cr3t-token-value")
    log.error("went wrong")
    err = capsys.readouterr().err
    assert "went wrong" in err  # errors still reach stderr (cron mails them)
    assert "started" not in err
    lines = path.read_text().splitlines()
    assert lines[0] == "an earlier run"  # appended
    assert "started with ***" in lines[1]
    assert "s3cr3t" not in path.read_text()
    if log_format == "json":
        assert json.loads(lines[2])["message"] == "went wrong"
    else:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ERROR   went wrong$", lines[2])
    path.rename(tmp_path / "sync.log.1")  # logrotate, without copytruncate
    log.info("after the rotation")
    write_log_file("── osvi-archiver summary ──")
    assert "after the rotation" in path.read_text().splitlines()[-2]
    assert path.read_text().splitlines()[-1] == "── osvi-archiver summary ──"
    assert "after" not in (tmp_path / "sync.log.1").read_text()
    new = tmp_path / "new.log"
    setup_logging("INFO", [], "text", new)
    assert os.stat(new).st_mode & 0o777 == 0o600  # owner-only
    # Reopened after a rotation: owner-only again, and never through a link planted there.
    new.rename(tmp_path / "new.log.1")
    log.info("into the reopened file")
    assert os.stat(new).st_mode & 0o777 == 0o600
    new.rename(tmp_path / "new.log.2")
    (tmp_path / "elsewhere").write_text("")
    new.symlink_to(tmp_path / "elsewhere")
    capsys.readouterr()
    log.info("must not reach the link's target")
    assert (tmp_path / "elsewhere").read_text() == ""
    err = capsys.readouterr().err
    assert "cannot be reopened" in err
    assert "must not reach the link's target" in err  # not lost: on stderr


@pytest.mark.usefixtures("reset_logging")
def test_a_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path) -> None:
    from archiver.errors import UsageError

    (tmp_path / "target").write_text("")
    (tmp_path / "link.log").symlink_to(tmp_path / "target")
    with pytest.raises(UsageError, match=r"link\.log: cannot open it for appending"):
        setup_logging("INFO", [], "text", tmp_path / "link.log")
    with pytest.raises(UsageError, match="cannot open it for appending"):
        setup_logging("INFO", [], "text", tmp_path / "no-such-folder" / "x.log")


@pytest.mark.usefixtures("reset_logging")
def test_with_a_log_file_stderr_keeps_the_errors_and_the_runs_end_in_json_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("INFO", [], "json", tmp_path / "j.log")
    log = logging.getLogger("archiver.cli.commands")
    log.info("progress", extra={"event": "progress"})
    log.info("run finished", extra={"event": "run_finished"})
    log.warning("a warning")
    err = [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()]
    assert err == ["run_finished"]
    logged = [json.loads(line)["event"] for line in (tmp_path / "j.log").read_text().splitlines()]
    assert logged == ["progress", "run_finished", "log.archiver.cli.commands"]
