"""Logging setup, and the redaction filter every handler carries (§8, defence in depth).

Code never logs the token or a URL's query on purpose; the filter makes sure that a message
built from an exception or a third-party string cannot either, and that control characters a
server sent (ANSI escapes in an error body) reach no terminal: a record is one line. It sits
on the handler, not on a logger, so it sees every record whatever logger emitted it, and it
redacts the fields a JSON line carries as well as the message (archiver.redaction).

Levels: the default (INFO) shows run-level events and each call's final failure; `-v` (DEBUG)
adds every retry; `-q` (ERROR) only errors (a call that failed after its retries is one).

`--log-format json` writes JSON Lines on stderr: `time` (UTC, ISO 8601), `level`, `event`
(a stable name: run_started, run_finished, retry, call_failed, invalid_row, progress, ...),
`message`, `command` and, for `run` and `sync`, `shard` (K/N, when sharded) and `run_id` (from
the moment the run has one: every line of a run), then when they apply `call_id`, `attempt`,
`status`, `error_kind` and the event's other fields (passed as `extra=` by the code that
logs). Eight shards' logs in one journal are told apart by `shard` and `run_id`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from archiver import redaction
from archiver.errors import UsageError

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_FIRST_FIELDS = ("event", "run_id", "command", "shard", "call_id", "attempt", "status",
                 "error_kind")  # fmt: skip
# What every line of this process says about its run: the command, the shard, the run's id
# once it has one (set_context). One process runs one command: a module dict, which worker
# threads see too (a ContextVar would not reach the input's reader thread).
_context: dict[str, str] = {}


def set_context(**fields: str | None) -> None:
    """Add (or, with None, drop) fields every later log line carries."""
    for name, value in fields.items():
        if value is None:
            _context.pop(name, None)
        else:
            _context[name] = value


class Context(logging.Filter):
    """Puts the process's context (set_context) on each record that has not its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class Redactor(logging.Filter):
    """Rewrites each record's final message and its extra fields: secrets become ***, URL
    queries are dropped, control characters escaped (a traceback keeps its line breaks)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        for secret in secrets:
            redaction.add_secret(secret)

    def redact(self, text: str) -> str:
        return redaction.scrub(text)

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact_value(v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redaction.scrub(text, keep_newlines=True)
            record.exc_info = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD:
                setattr(record, name, self._redact_value(value))
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record (see the module's docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "event": getattr(record, "event", None) or _default_event(record),
            "message": record.getMessage(),
        }  # fmt: skip
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        for name in _FIRST_FIELDS[1:]:
            if name in extra:
                line[name] = extra.pop(name)
        extra.pop("event", None)
        line.update(extra)
        if record.exc_text:
            line["traceback"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def _default_event(record: logging.LogRecord) -> str:
    """Records without an event of their own (a library's warning): named by their logger."""
    return "log" if record.name == "root" else f"log.{record.name}"


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is now, so rich's live display can print logs above
    its bar instead of being garbled by them."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_json_mode = False


def json_mode() -> bool:
    """Whether logs are JSON Lines (the CLI then reports a fatal error as one too)."""
    return _json_mode


def forget_format() -> None:
    """Back to text until the next setup_logging, no context (each CLI invocation starts
    here)."""
    global _json_mode
    _json_mode = False
    _context.clear()


_log_file: OwnLogFile | None = None


class OwnLogFile(logging.handlers.WatchedFileHandler):
    """`--log-file`: appended, reopened when logrotate has moved it (WatchedFileHandler checks
    the file's identity before each record), and every open, the reopens too, owner-only
    (0600: the log names calls and hosts) and never through a link planted at its name."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW,
                     0o600)  # fmt: skip
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    _refused = False  # said once that the file could not be reopened

    def emit(self, record: logging.LogRecord) -> None:
        """A record; when the file cannot be (re)opened (a link planted at its name, a
        folder gone), to stderr instead, said once: never lost, never through the link."""
        try:
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
        except OSError as exc:
            if not self._refused:
                self._refused = True
                where = self.baseFilename
                sys.stderr.write(
                    f"osvi-archiver: log_file {where} cannot be reopened ({exc.strerror}): "
                    "the log goes to stderr\n"
                )
            sys.stderr.write(self.format(record) + "\n")
            return
        logging.FileHandler.emit(self, record)

    def write_text(self, text: str) -> None:
        """`text` as it is (the summary, a fatal error), after a reopen if the file moved."""
        self.acquire()
        try:
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(text + "\n")
            self.stream.flush()
        finally:
            self.release()


def open_log_file(path: Path) -> OwnLogFile:
    """The --log-file's handler; a UsageError (exit 2) when it cannot be opened."""
    try:
        handler = OwnLogFile(path, encoding="utf-8", delay=True)
        handler.stream = handler._open()  # now: a path that cannot be opened is said at once
        handler._statstream()  # what reopenIfNeeded compares the path with
        return handler
    except OSError as exc:
        raise UsageError(f"log_file {path}: cannot open it for appending ({exc.strerror})") from exc


def write_log_file(text: str) -> None:
    """Append `text` to the --log-file as it is, when there is one."""
    if _log_file is not None:
        with contextlib.suppress(OSError):
            _log_file.write_text(text)


def log_file_open() -> bool:
    return _log_file is not None


class _ErrorsAndTheEnd(logging.Filter):
    """With a --log-file, what stderr still gets: errors, and the run's end (JSON's
    `run_finished`, the summary of JSON logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or getattr(record, "event", "") == "run_finished"


def setup_logging(
    level: str, secrets: list[str], log_format: str = "text", log_file: Path | None = None
) -> Redactor:
    """Logs on stderr at `level`, text or JSON Lines, every record through the redactor. With
    `log_file`, the records go there instead, and stderr keeps the errors and the run's end."""
    global _json_mode, _log_file
    _json_mode = log_format == "json"
    redactor = Redactor(secrets)
    handlers: list[logging.Handler] = [_CurrentStderr()]
    own = open_log_file(log_file) if log_file is not None else None
    if own is not None:
        handlers[0].addFilter(_ErrorsAndTheEnd())
        handlers.append(own)
    if _log_file is not None:
        _log_file.close()
    _log_file = own
    for handler in handlers:
        if _json_mode:
            handler.setFormatter(JsonLines())
        elif handler is _log_file:  # a file read days later: the date too
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
            )
        handler.addFilter(Context())
        handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        root.addHandler(handler)
    # -v is about this tool: other libraries (asyncio, aiohttp) keep to warnings and errors.
    root.setLevel(level if level in ("WARNING", "ERROR") else "WARNING")
    logging.getLogger("archiver").setLevel(level)
    return redactor


def json_fatal(message: str, exit_code: int) -> None:
    """The error that ends the command as one `fatal` JSON event on stderr (redacted)."""
    if not _json_mode:  # the settings failed before logging was set up, or were never read
        setup_logging("ERROR", [os.environ.get("OSVI_API_TOKEN", "")], "json")
    logging.getLogger("archiver.cli.main").error(
        "%s", message, extra={"event": "fatal", "exit_code": exit_code}
    )
