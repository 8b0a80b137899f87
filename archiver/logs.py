"""Logging setup, and the redaction filter every handler carries (§8, defence in depth).

Code never logs the token or a URL's query on purpose; the filter makes sure that a message
built from an exception or a third-party string cannot either.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")


class Redactor(logging.Filter):
    """Rewrites each record's final message: the token becomes ***, URL queries are dropped."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_QUERY.sub(r"\1?<query hidden>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is now, so rich's live display can print logs above
    its bar instead of being garbled by them."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def setup_logging(level: str, secrets: list[str]) -> Redactor:
    """Text logs on stderr at `level`, every record passed through the redactor."""
    redactor = Redactor(secrets)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("archiver").setLevel(level)
    return redactor
