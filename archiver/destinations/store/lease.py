"""One run per bucket destination (per shard, §6): a lease object in the store.

The lock object (`.osvi-archiver/[shard-K-of-N/]lock` under the prefix) is created with a
create-only conditional put, so of two runs starting together one wins and the other exits 75.
It says who holds it (a random owner token, the host, the pid); the holder renews it every
LEASE_SECONDS / 3 with a put conditional on the ETag it wrote last.

How old a lease is, is judged by the store's clock only, never by comparing two machines'
clocks (a machine 300 s ahead took over a live lease at once): the lock's Last-Modified
against the Last-Modified of a small object the reader writes at that moment (`.clock-`
beside the lock, deleted after). A lock not renewed for a whole lease is taken over, again
with a conditional put (of two runs taking over at once, one wins).

A reply can be lost after the store applied a put (the client then retries, and the retry
fails its own condition): on a failed condition the lock is read, and if its owner token is
this run's, the lease is still ours, at its new ETag. Renewals use obstore's own async
requests, never a thread of the default executor (which `.part` writes, snapshots and the
manifest keep busy). A holder that could not renew for FENCE of a lease (a clock of its own,
checked every second, not after each failed renewal) stops at once, exit 75, before another
run may take over; and it then never deletes the lock on release (it may be another's now:
the stores have no conditional delete that obstore exposes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError

from archiver.destinations.lock import ArchiveLock
from archiver.destinations.store.client import reason
from archiver.errors import ArchiveLocked, LocalError
from archiver.state.call_records import utc_now

log = logging.getLogger("archiver.destinations.store.lease")
LEASE_SECONDS = 60.0
FENCE = 0.75  # a run that could not renew for this share of its lease stops (it may be lost)
FENCE_CHECK = 1.0  # seconds between two looks at the fence


class Lease:
    def __init__(
        self,
        store: Any,
        key: str,
        where: str,
        *,
        seconds: float | None = None,  # LEASE_SECONDS
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self.key = key
        self._shown = f"{where}/{key}"
        self.seconds = LEASE_SECONDS if seconds is None else seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._owner = secrets.token_hex(8)
        self._version: Any = None  # the e_tag (and version) of the lock as we wrote it last
        self._renewed = 0.0  # monotonic: when the lock was last written (taken or renewed)
        self._lost: ArchiveLocked | None = None
        self._callbacks: list[Callable[[], None]] = []

    def _body(self) -> bytes:
        holder = {"owner": self._owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "renewed_at": utc_now(), "lease_seconds": self.seconds}  # fmt: skip
        return json.dumps(holder).encode()

    def acquire(self) -> None:
        for _ in range(3):  # a lock released between our create and our read: create again
            try:
                self._version = obstore.put(self._store, self.key, self._body(), mode="create")
                self._renewed = self._monotonic()
                return
            except AlreadyExistsError:
                pass
            except Exception as exc:
                raise _failed(exc, self._shown, "take") from exc
            if self._take_over():
                return
        raise ArchiveLocked(f"the lease {self._shown} keeps changing hands; try again later")

    def _take_over(self) -> bool:
        """Take the lock when it is ours already (our create applied, its reply lost) or
        older than a lease by the store's clock; False when it was gone meanwhile."""
        try:
            found = obstore.get(self._store, self.key)
            body = bytes(found.bytes())
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _failed(exc, self._shown, "read") from exc
        holder = _holder(body)
        if holder.get("owner") == self._owner:  # our create, whose reply was lost
            self._version, self._renewed = _version_of(found.meta), self._monotonic()
            return True
        age = self._store_now() - found.meta["last_modified"].timestamp()
        if age < self.seconds:
            who = f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
            raise ArchiveLocked(
                f"another osvi-archiver run holds this archive ({who}; its lease {self._shown} "
                f"runs {self.seconds - age:.0f} s more unless renewed); try again later"
            )
        try:
            version = _version_of(found.meta)
            self._version = obstore.put(self._store, self.key, self._body(), mode=version)
            self._renewed = self._monotonic()
        except PreconditionError:
            raise ArchiveLocked(
                f"another run took over the expired lease {self._shown} first; try again later"
            ) from None
        except Exception as exc:
            raise _failed(exc, self._shown, "take over") from exc
        log.warning(
            "took over the lease %s of a run that stopped renewing it %.0f s ago (host %s, pid %s)",
            self._shown,
            age,
            holder.get("host", "?"),
            holder.get("pid", "?"),
            extra={"event": "lease_taken_over"},
        )
        return True

    def _store_now(self) -> float:
        """The store's clock now: the Last-Modified of a small object written for it."""
        key = f"{self.key}.clock-{self._owner}"
        try:
            obstore.put(self._store, key, b"now", use_multipart=False)
            now = obstore.head(self._store, key)["last_modified"].timestamp()
        except Exception as exc:
            raise _failed(exc, self._shown, "read the store's clock beside") from exc
        with contextlib.suppress(Exception):
            obstore.delete(self._store, key)
        return float(now)

    async def renew(self) -> None:
        """Extend the lease; ArchiveLocked when another run holds it now."""
        assert self._version is not None
        try:
            mode = _version_of(self._version)
            self._version = await obstore.put_async(self._store, self.key, self._body(),
                                                    mode=mode)  # fmt: skip
        except (PreconditionError, FileNotFoundError):
            if not await self._still_ours():
                raise ArchiveLocked(
                    f"this run lost its lease {self._shown} (another run took it over after "
                    "this one stopped renewing it): stopping"
                ) from None
        self._renewed = self._monotonic()

    async def _still_ours(self) -> bool:
        """After a failed condition: whether the lock is our own write all the same (the
        store applied our put, its reply was lost, the retry failed its condition)."""
        try:
            found = await obstore.get_async(self._store, self.key)
            body = bytes(await found.bytes_async())
        except FileNotFoundError:
            return False
        if _holder(body).get("owner") != self._owner:
            return False
        self._version = _version_of(found.meta)
        log.info("the lease %s was renewed although its reply was lost", self._shown,
                 extra={"event": "lease_reply_lost"})  # fmt: skip
        return True

    def release(self) -> None:
        """Delete the lock object if it is still ours and cannot have been taken over: never
        after the lease was lost, or after renewals failed for FENCE of it."""
        if self._version is None:
            return
        self._version = None
        if self._lost is not None or self._quiet() > self.seconds * FENCE:
            log.info("the lease %s is left to expire (it may be another run's now)",
                     self._shown, extra={"event": "lease_left"})  # fmt: skip
            return
        with contextlib.suppress(Exception):
            if _holder(bytes(obstore.get(self._store, self.key).bytes())).get("owner") == (
                self._owner
            ):
                obstore.delete(self._store, self.key)

    def _quiet(self) -> float:
        """Seconds since the lock was last written by this run."""
        return self._monotonic() - self._renewed

    def lost(self) -> ArchiveLocked | None:
        """Why this run no longer holds the lease (None: it does)."""
        return self._lost

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Called once, on the loop, when the lease is lost (the run cancels its work)."""
        self._callbacks.append(callback)

    def _lose(self, why: ArchiveLocked) -> None:
        if self._lost is None:
            self._lost = why
            # Said once, by the run's fatal line when it stops on it (its error is this one).
            log.debug("%s", why, extra={"event": "lease_lost"})
            for callback in self._callbacks:
                callback()

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease every third of it while the body runs (from right after the lock
        is taken: the state's restore included), and watch the fence on a timer of its own:
        the lease is lost when another run holds it now, and also when this run could not
        renew it for FENCE of a lease (the store or the network down: another run may take
        it over at a whole lease, so this one stops writing before)."""
        tasks = [asyncio.create_task(self._renewing()), asyncio.create_task(self._fencing())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _renewing(self) -> None:
        while self._lost is None:
            await self._sleep(self.seconds / 3)
            try:
                await self.renew()
            except ArchiveLocked as exc:
                self._lose(exc)
            except Exception as exc:
                log.warning("could not renew the lease %s: %s", self._shown, reason(exc),
                            extra={"event": "lease_renewal"})  # fmt: skip

    async def _fencing(self) -> None:
        while self._lost is None:
            await self._sleep(min(FENCE_CHECK, self.seconds / 20))
            if self._quiet() > self.seconds * FENCE:
                self._lose(ArchiveLocked(
                    f"this run could not renew its lease {self._shown} for {self._quiet():.0f} "
                    "s: stopping before another run may take it over"))  # fmt: skip


class LeaseHolding:
    """A bucket destination's lock: the local `flock` of its state folder, then the lease."""

    def __init__(self, local: ArchiveLock, lease: Lease) -> None:
        self.local = local
        self.lease = lease

    def acquire(self) -> None:
        self.local.acquire()
        try:
            self.lease.acquire()
        except BaseException:
            self.local.release()
            raise

    def release(self) -> None:
        try:
            self.lease.release()
        finally:
            self.local.release()

    def kept(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.lease.kept()

    def lost(self) -> ArchiveLocked | None:
        return self.lease.lost()

    def on_lost(self, callback: Callable[[], None]) -> None:
        self.lease.on_lost(callback)


def _version_of(found: Any) -> Any:
    """The condition of a put that replaces exactly this version: its ETag, and its version
    where the store keeps versions (obstore refuses a None)."""
    return {key: found[key] for key in ("e_tag", "version") if found.get(key)}


def _holder(body: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(body)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _failed(exc: Exception, shown: str, doing: str) -> LocalError:
    return LocalError(f"cannot {doing} the lease {shown}: {reason(exc)}")
