"""Every error the archiver raises: two trees, one per kind of failure.

A run-level error stops the run and carries its exit code; a call-level error is one call's
outcome (its `kind` is the manifest's `error.kind`) and never stops the run.

    RunError                           stops the run; `exit_code`
    ├── UsageError                     2: bad flag, setting, config file, input header, query
    ├── AuthError                      3: the API rejected the token (stops the run at once)
    ├── LocalError                     4: folder not writable, state unreadable, I/O error
    │   └── DiskFull                   4: no space left (says where, and how much was needed)
    ├── Unavailable                    69: the API or recording host unreachable for too long,
    │                                      its TLS certificate refused, or the proxy refusing us
    ├── InternalError                  70: an unexpected exception outside any one call
    ├── ArchiveLocked                  75: another run holds this archive
    └── Interrupted                    129 / 130 / 143: SIGHUP / SIGINT / SIGTERM

    CallError                          one call failed; becomes its outcome; `kind`
    ├── TransientError                 retried (SPEC §5.3)
    │   ├── ConnectionFault            connection: refused/reset/timed out before an answer
    │   ├── ServerError                server_error: 5xx from the API
    │   ├── Throttled                  throttled: 429, or 503 with Retry-After (carries the wait)
    │   ├── RecordingServerError       recording_server_error: 5xx or 404 from the recording host
    │   ├── BodyIncomplete             incomplete_body: shorter than announced, or a stalled body
    │   ├── TooSlow                    too_slow: below min_speed for min_speed_time
    │   ├── ChecksumMismatch           checksum_mismatch: body differs from its MD5 ETag
    │   ├── UrlRefused                 url_refused: 403 from the recording host (expired URL)
    │   ├── UrlExpired                 url_expired: the URL was too old to use when it came
    │   └── NotAudioOnce               not_audio: retried once with a fresh URL
    └── PermanentError                 not retried
        ├── ApiRejected                api_rejected: 400/403/404/422 from the API
        ├── ApiBadResponse             api_bad_response: not JSON, a bad envelope, too large
        ├── UnsafeUrl                  unsafe_url: a recording URL or redirect breaking §8's rules
        ├── RecordingRefused           recording_refused: another 4xx from the recording host,
        │                                  too many redirects, or its TLS refused mid-run
        ├── TooLarge                   too_large: the recording is over max_recording_size
        ├── NotAvailable               not_available: 404 recording_not_available
        ├── NotAudio                   not_audio: not audio again after a fresh try
        ├── StoreRefused               store_refused: the bucket refused this one object
        └── InternalCallError          internal_error: an unexpected exception in this call

Library exceptions (aiohttp, OSError, sqlite3, ValueError from a URL parser) are mapped into
these trees once, where they are caught (osvi/api.py, transfer/download.py,
archive/storage.py, state/database.py), with `raise ... from exc` keeping the cause. Anything
else raised while handling a call becomes that call's `internal_error` (engine/call.py);
anything else outside a call, exit 70 (engine/lifecycle.py).
Messages never hold the token or a URL's query string.
"""

from __future__ import annotations


class RunError(Exception):
    """A failure of the whole run; the process exits with `exit_code`."""

    exit_code = 1


class UsageError(RunError):
    exit_code = 2


class AuthError(RunError):
    exit_code = 3


class LocalError(RunError):
    exit_code = 4


class DiskFull(LocalError):
    """No space left while writing; says where and how much was needed."""


class Unavailable(RunError):
    exit_code = 69

    def __init__(self, message: str, *, outage: bool = False) -> None:
        super().__init__(message)
        self.outage = outage  # no answer for too long (a refused certificate or login: False)


class InternalError(RunError):
    """An unexpected exception outside any call: a bug. The message names it."""

    exit_code = 70

    @classmethod
    def of(cls, exc: BaseException) -> InternalError:
        return cls(
            f"internal error: {type(exc).__name__}: {exc} "
            "(please report it; -v shows the traceback)"
        )


class ArchiveLocked(RunError):
    exit_code = 75


class Interrupted(RunError):
    """The run was stopped by a signal; the exit code is 128 + the signal's number."""

    def __init__(self, signum: int, name: str, at: float = 0.0) -> None:
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum
        self.at = at  # time.monotonic() when it came


class DeadlineReached(Interrupted):
    """--max-duration: the run stopped itself cleanly at its deadline (exit 124, as
    timeout(1)); like a signal, a rerun continues where it stopped."""

    def __init__(self, limit: str, at: float = 0.0) -> None:
        RunError.__init__(self, f"stopped at --max-duration ({limit})")
        self.exit_code = 124
        self.at = at


class CallError(Exception):
    """A failure of one call. `kind` is what the manifest's `error.kind` says."""

    kind = "error"


class TransientError(CallError):
    kind = "transient"


class ConnectionFault(TransientError):
    """No answer: refused, reset, timed out. `outage` when it happened while the host was
    unreachable for everyone (limits.Reachability): such a try costs the call no attempt."""

    kind = "connection"

    def __init__(self, message: str, *, outage: bool = False) -> None:
        super().__init__(message)
        self.outage = outage


class ServerError(TransientError):
    kind = "server_error"


class Throttled(TransientError):
    kind = "throttled"

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RecordingServerError(TransientError):
    kind = "recording_server_error"


class BodyIncomplete(TransientError):
    kind = "incomplete_body"


class TooSlow(TransientError):
    kind = "too_slow"


class ChecksumMismatch(TransientError):
    kind = "checksum_mismatch"


class UrlRefused(TransientError):
    kind = "url_refused"


class UrlExpired(TransientError):
    kind = "url_expired"


class NotAudioOnce(TransientError):
    kind = "not_audio"


class PermanentError(CallError):
    kind = "permanent"


class ApiRejected(PermanentError):
    """`status`: the API's HTTP status, when it was an answer (None: a refused redirect)."""

    kind = "api_rejected"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiBadResponse(PermanentError):
    kind = "api_bad_response"


class UnsafeUrl(PermanentError):
    kind = "unsafe_url"


class RecordingRefused(PermanentError):
    kind = "recording_refused"


class TooLarge(PermanentError):
    kind = "too_large"


class NotAvailable(PermanentError):
    kind = "not_available"


class NotAudio(PermanentError):
    kind = "not_audio"


class StoreRefused(PermanentError):
    """The object store refused this call's object (a 4xx on its key), while it accepts
    others: that call fails; a refusal of the bucket itself is a run-level StoreError."""

    kind = "store_refused"


class InternalCallError(PermanentError):
    """An unexpected exception while handling one call: that call fails, the run goes on."""

    kind = "internal_error"

    @classmethod
    def of(cls, exc: BaseException) -> InternalCallError:
        return cls(f"internal error: {type(exc).__name__}: {exc}")


def as_call_error(exc: Exception) -> CallError:
    """What an exception met while handling one call makes of it: itself when it is one of
    ours, else an `internal_error` naming it (the cause kept)."""
    if isinstance(exc, CallError):
        return exc
    error = InternalCallError.of(exc)
    error.__cause__ = exc
    return error
