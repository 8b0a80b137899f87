"""The obstore client of a bucket destination, built from its settings (its credentials from
the environment and the provider chains only, never from a setting); the metadata keys every
object of the tool's carries; and `Bucket`, the small handle of a bucket prefix that the
destination, its snapshots and verify share: its client, the URL shown for it, the local
folder mirroring it, and a listing that goes past keys the client cannot parse."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import InvalidPathError, PermissionDeniedError, UnauthenticatedError
from obstore.store import from_url

from archiver.config.out_dir import StoreUrl
from archiver.errors import LocalError, StoreRefused, UsageError
from archiver.redaction import scrub, shorten

if TYPE_CHECKING:
    from archiver.config.settings import Settings

log = logging.getLogger("archiver.store")


def store_of(url: StoreUrl, settings: Settings, *, quick: bool = False) -> Any:
    """The obstore client of `url`: settings for endpoint, region, plain http, encryption,
    the rest (credentials first) from the environment and the provider chains. `quick`: the
    lease's, whose requests must answer within seconds (obstore's default retries for 3 min).
    """
    config: dict[str, Any] = {}
    endpoint = settings.store_endpoint
    if endpoint and endpoint.startswith("http:") and not settings.store_allow_http:
        raise UsageError(f"store_endpoint {endpoint} is plain http: add --store-allow-http "
                         "(a local test store only), or use https")  # fmt: skip
    if url.scheme == "s3":
        config.update(
            endpoint=endpoint,
            region=settings.store_region,
            server_side_encryption=settings.store_sse,
            sse_kms_key_id=settings.store_sse_kms_key_id,
        )
    elif settings.store_sse or settings.store_sse_kms_key_id:
        raise UsageError(
            f"store_sse and store_sse_kms_key_id are S3's; {url.scheme}:// encrypts with the "
            "bucket's own default key"
        )
    else:
        config.update({"base_url" if url.scheme == "gs" else "endpoint": endpoint})
    config = {key: value for key, value in config.items() if value is not None}
    options: dict[str, Any] = {"allow_http": True} if settings.store_allow_http else {}
    retry: dict[str, Any] | None = None
    if quick:
        options.update(timeout="10s", connect_timeout="5s")
        retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}
    build: Any = from_url  # its overloads are typed per scheme; ours is known at run time
    try:
        store = build(f"{url.scheme}://{url.bucket}/{url.prefix}", config=config,
                      client_options=options or None, retry_config=retry)  # fmt: skip
    except Exception as exc:  # a configuration obstore refuses (no region found, say)
        raise StoreError(f"cannot use {url}: {reason(exc)}") from exc
    if (store.prefix or "") != url.prefix:  # never another prefix than the one shown
        raise UsageError(f"{url}: the store reads its prefix as {store.prefix!r}")
    return store


# The metadata each object of the tool's carries (S3's x-amz-meta-*, GCS's and Azure's user
# metadata): letters and digits only, the one spelling all three stores (and the proxies in
# front of S3-compatible ones, which may drop headers with `_`) accept.
META_SHA256, META_SIZE, META_CALL, META_KIND = "osvisha256", "osvisize", "osvicallid", "osvikind"


_PAGE = 1000  # objects a listing batch holds
_RUST_STRING = re.compile(r'path: "((?:[^"\\]|\\.)*)"')
_RUST_ESCAPE = re.compile(r"\\(u\{([0-9a-fA-F]{1,6})\}|.)")


def bad_key(exc: BaseException, prefix: str) -> str | None:
    """The key (relative to the store's prefix) an InvalidPathError of a listing names."""
    found = _RUST_STRING.search(str(exc))
    if found is None:
        return None

    def unescape(escape: re.Match[str]) -> str:
        if escape.group(2):
            return chr(int(escape.group(2), 16))
        return {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}.get(escape.group(1), escape.group(1))

    path = _RUST_ESCAPE.sub(unescape, found.group(1))
    lead = f"{prefix.rstrip('/')}/" if prefix else ""
    return path[len(lead) :] if path.startswith(lead) else None


def key_after(key: str) -> str:
    """The smallest key the store client can parse that sorts after `key` and after every
    key sharing its first invalid part (`a//...`, `x/../...`, `c\x01...`): where a listing
    goes on past an invalid key (its offset is exclusive: this key itself is looked up)."""
    start = 0
    segments = key.split("/")
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        if segment in ("", ".", ".."):
            # Everything under it is invalid: go on after the '/' that follows (then '0').
            return key + " " if last else key[: start + len(segment)] + "0"
        for at, char in enumerate(segment):
            if ord(char) < 0x20 or ord(char) == 0x7F:
                return key[: start + at] + (" " if ord(char) < 0x20 else "\x80")
        start += len(segment) + 1
    return key + " "


class Bucket:
    """A bucket prefix as the tool reads it: `store` its obstore client, `where` the URL shown
    for it (never with credentials), `root` the local folder that holds its state."""

    def __init__(self, store: Any, where: str, root: Path) -> None:
        self.store = store
        self.where = where
        self.root = root

    def key_url(self, relative: str) -> str:
        return f"{self.where}/{relative}"

    def listing(
        self,
        folder: str,
        *,
        recursive: bool = False,
        skipped: list[str] | None = None,
        after: str | None = None,
    ) -> Iterator[Any]:
        """The objects under `folder` (their `path` relative to the prefix, `size`, ...),
        directly in it unless `recursive`. A key the store client cannot parse (`a//b`, a
        control character, a `.` or `..` segment: never one of the tool's) is skipped, with
        one warning naming those skipped, and added to `skipped`: the listing goes on after
        it. obstore reads the store's listing a page of up to 1,000 keys at a time and
        refuses a whole page holding such a key, so the keys listed before it in its page
        (after the last one read) are not seen either: a caller that must see every key
        looks at `skipped` (present: a HEAD each; names: refuses)."""
        skipped = [] if skipped is None else skipped
        try:
            for item in self._objects(folder.rstrip("/") or None, skipped, after):
                if recursive or self._direct(folder, item["path"]):
                    yield item
        except Exception as exc:
            raise store_error(exc, self.key_url(folder), "list") from exc
        finally:
            if skipped:
                log.warning(
                    "skipped %d keys under %s that are no file names (%s); the keys the store "
                    "listed before each in the same page (up to 999) could not be read either",
                    len(skipped),
                    self.key_url(folder),
                    ", ".join(repr(key) for key in skipped[:5]) + (", ..." if skipped[5:] else ""),
                    extra={"event": "foreign_keys", "count": len(skipped)},
                )

    def _objects(
        self, prefix: str | None, skipped: list[str], after: str | None = None
    ) -> Iterator[Any]:
        """Every object under `prefix` (after the key `after`), each invalid key added to
        `skipped` and gone past."""
        offset = after
        chunk = _PAGE  # 1 after an invalid key: obstore drops the whole batch holding one
        while True:
            try:
                for batch in obstore.list(self.store, prefix=prefix, offset=offset,
                                          chunk_size=chunk):  # fmt: skip
                    for item in batch:
                        offset = item["path"]
                        yield item
                return
            except InvalidPathError as exc:
                bad = bad_key(exc, self.store.prefix or "")
                if bad is None or (offset is not None and bad <= offset):
                    raise
                if chunk != 1:  # again from the last good key, an object at a time
                    chunk = 1
                    continue
                skipped.append(bad)
                offset, chunk = key_after(bad), _PAGE
                found = self.head(offset)
                if found is not None:
                    yield found

    @staticmethod
    def _direct(folder: str, path: str) -> bool:
        """Whether `path` is directly in `folder` (not in a folder under it)."""
        inner = folder.rstrip("/")
        return "/" not in (path[len(inner) + 1 :] if inner else path)

    def pages(
        self, folder: str = "", size: int = 1000, after: str | None = None
    ) -> Iterator[list[Any]]:
        """The whole listing under `folder` (after the key `after`), a page of `size` objects
        at a time (memory stays flat), foreign keys skipped as `listing` does."""
        objects = self.listing(folder, recursive=True, after=after)
        while page := list(itertools.islice(objects, size)):
            yield page

    def head(self, key: str) -> Any:
        """A key's listing entry (its metadata), None when there is no such object."""
        try:
            return obstore.head(self.store, key)
        except FileNotFoundError:
            return None


# What an object store's refusals and failures become: one short line a user can act on,
# naming the request and never a credential (obstore's own text names the request and goes on
# with a debug dump; S3's XML error says what is wrong).


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
