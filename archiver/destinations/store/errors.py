"""What an object store's refusals and failures become: one short line a user can act on,
naming the request and never a credential (obstore's own text names the request and goes on
with a debug dump; S3's XML error says what is wrong)."""

from __future__ import annotations

import re

from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

from archiver.errors import LocalError, StoreRefused
from archiver.redaction import scrub, shorten


class StoreError(LocalError):
    """The store refused or failed a request after its retries (exit 4, as a folder that
    cannot be written)."""


def store_error(exc: BaseException, url: str, doing: str) -> StoreError:
    """The error a user can act on, without a secret (obstore names the request, never the
    credentials)."""
    return StoreError(f"cannot {doing} {url}: {reason(exc)}")


def refusal(exc: BaseException) -> StoreRefused | None:
    """The store's refusal of one request (an HTTP 4xx answer: 400 InvalidRequest, 403 on a
    key, 409 object-lock, a key too long), as that call's outcome; None for anything else:
    no answer at all, a 5xx past obstore's retries, the credentials or the bucket refused
    (which the caller makes a run-level StoreError)."""
    if isinstance(exc, UnauthenticatedError) or _is_bucket_refusal(str(exc)):
        return None
    status = _STATUS.search(str(exc))
    if status is None or not status.group(1).startswith("4"):
        return None
    return StoreRefused(f"the store refused it: {reason(exc)}")


def _is_bucket_refusal(text: str) -> bool:
    code = _CODE.search(text)
    bucket = code is not None and code.group(1) in _BUCKET_CODES
    return bucket or "credential" in text.lower() or "169.254.169.254" in text


# Error codes that refuse the bucket or the credentials, not one object.
_BUCKET_CODES = frozenset({"NoSuchBucket", "ContainerNotFound", "InvalidAccessKeyId",
                           "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                           "AccountIsDisabled", "AuthenticationFailed"})  # fmt: skip
_CODE = re.compile(r"<Code>([^<]{1,80})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")
_STATUS = re.compile(r"status code: (\d{3}[^:]{0,40})")


def reason(exc: BaseException) -> str:
    """One short line of what the store said: its error code and message (S3's XML), or the
    HTTP status, or the first line of obstore's text (which goes on with a debug dump)."""
    text = str(exc)
    code, message, status = _CODE.search(text), _MESSAGE.search(text), _STATUS.search(text)
    if "169.254.169.254" in text or "credential" in text.lower():
        return (
            "no credentials for the store were found (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, a web identity or an instance role; "
            "GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_ACCOUNT_NAME and its key: README, "
            '"Archiving into a bucket")'
        )
    if "error sending request" in text or "Connection refused" in text:
        return "no connection to the store (is --store-endpoint right, is the network up?)"
    if code and message:
        said = f"{code.group(1)}: {message.group(1)}"
    elif status:
        said = f"HTTP {status.group(1).strip()}"
    else:
        said = text.split("\n", 1)[0].split(" Debug source:", 1)[0] or type(exc).__name__
    hint = ""
    if isinstance(exc, UnauthenticatedError | PermissionDeniedError) or (
        code and code.group(1) in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
    ):
        hint = " (check the store's credentials and their permissions on this bucket)"
    elif code and code.group(1) in ("NoSuchBucket", "ContainerNotFound"):
        hint = " (does the bucket exist?)"
    return shorten(scrub(said), 400) + hint
