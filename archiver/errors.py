"""Every error the archiver raises, one tree, the exit code a class attribute.

    ArchiverError                      exit 1
    ├── UsageError                     exit 2: bad flag, setting, config file or input header
    ├── AuthError                      exit 3: the API rejected the token (stops the run)
    ├── LocalError                     exit 4: disk full, folder not writable, state unreadable
    ├── ArchiveLocked                  exit 75: another run holds this archive
    ├── Interrupted                    exit 130 / 143: SIGINT / SIGTERM
    └── CallError                      one call failed; becomes an outcome, never stops the run
        ├── TransientError             retried (SPEC §5.3)
        │   ├── ConnectionFault        connection refused/reset, timeout, stalled body
        │   ├── ServerError            5xx
        │   ├── Throttled              429, or 503 with Retry-After: carries the wait
        │   ├── BodyIncomplete         body shorter than announced
        │   ├── ChecksumMismatch       body differs from its MD5 ETag
        │   ├── UrlRefused             403 from the recording host (expired or refused URL)
        │   └── NotAudioOnce           not audio; retried once with a fresh URL
        └── PermanentError             not retried
            ├── ApiRejected            400/403/404/422 from the API, an unsafe URL or redirect
            ├── NotAvailable           404 recording_not_available
            └── NotAudio               not audio again after a fresh try

Library exceptions (aiohttp, OSError) are mapped into this tree once, where they are caught
(api.py, download.py, storage.py), with `raise ... from exc` keeping the cause. Messages never
hold the token or a URL's query string.
"""

from __future__ import annotations


class ArchiverError(Exception):
    exit_code = 1


class UsageError(ArchiverError):
    exit_code = 2


class AuthError(ArchiverError):
    exit_code = 3


class LocalError(ArchiverError):
    exit_code = 4


class ArchiveLocked(ArchiverError):
    exit_code = 75


class Interrupted(ArchiverError):
    """The run was stopped by a signal; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum


class CallError(ArchiverError):
    """A failure of one call. `kind` is what the manifest's `error.kind` says."""

    kind = "error"


class TransientError(CallError):
    kind = "transient"


class ConnectionFault(TransientError):
    kind = "connection"


class ServerError(TransientError):
    kind = "server_error"


class Throttled(TransientError):
    kind = "throttled"

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BodyIncomplete(TransientError):
    kind = "incomplete_body"


class ChecksumMismatch(TransientError):
    kind = "checksum_mismatch"


class UrlRefused(TransientError):
    kind = "url_refused"


class NotAudioOnce(TransientError):
    kind = "not_audio"


class PermanentError(CallError):
    kind = "permanent"


class ApiRejected(PermanentError):
    kind = "api_rejected"


class NotAvailable(PermanentError):
    kind = "not_available"


class NotAudio(PermanentError):
    kind = "not_audio"
