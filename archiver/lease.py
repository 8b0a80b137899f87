"""One run per bucket destination (per shard, §6): a lease object in the store.

The lock object (`.osvi-archiver/[shard-K-of-N/]lock` under the prefix) is created with a
create-only conditional put, so of two runs starting together one wins and the other exits 75.
It says who holds it and until when; the holder renews it every LEASE_SECONDS / 3 with a put
conditional on the version it wrote last. A run killed with -9 (a pod evicted, a node lost)
stops renewing: once its lease is past its expiry, the next run takes it over, again with a
conditional put (of two runs taking over at once, one wins). A holder whose renewal finds the
object changed has lost the lease (it stalled for longer than a lease and was taken over): it
stops at once, exit 75, rather than write beside the new holder. Expiry is read against this
machine's clock: clocks a few seconds apart do not matter against a lease of a minute.
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
from collections.abc import AsyncIterator, Callable
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError

from archiver.errors import ArchiveLocked, LocalError
from archiver.lock import ArchiveLock
from archiver.records import utc_now
from archiver.storeerrors import reason

log = logging.getLogger("archiver.lease")
LEASE_SECONDS = 60.0
FENCE = 0.75  # a run that could not renew for this share of its lease stops (it may be lost)


class Lease:
    def __init__(
        self,
        store: Any,
        key: str,
        where: str,
        *,
        seconds: float | None = None,  # LEASE_SECONDS
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.key = key
        self._shown = f"{where}/{key}"
        self.seconds = LEASE_SECONDS if seconds is None else seconds
        self._clock = clock
        self._owner = secrets.token_hex(8)
        self._version: Any = None  # obstore's PutResult: the e_tag and version we wrote
        self._lost: ArchiveLocked | None = None
        self._callbacks: list[Callable[[], None]] = []

    def _body(self) -> bytes:
        now = self._clock()
        holder = {"owner": self._owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "renewed_at": utc_now(), "expires_at": now + self.seconds}  # fmt: skip
        return json.dumps(holder).encode()

    def acquire(self) -> None:
        for _ in range(3):  # a lock released between our create and our read: create again
            try:
                self._version = obstore.put(self._store, self.key, self._body(), mode="create")
                return
            except AlreadyExistsError:
                pass
            except Exception as exc:
                raise _failed(exc, self._shown, "take") from exc
            if self._take_over():
                return
        raise ArchiveLocked(f"the lease {self._shown} keeps changing hands; try again later")

    def _take_over(self) -> bool:
        """Take a lease past its expiry; False when it was gone (released) meanwhile."""
        try:
            found = obstore.get(self._store, self.key)
            body = bytes(found.bytes())
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _failed(exc, self._shown, "read") from exc
        holder = _holder(body)
        expires = holder.get("expires_at")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            # Not a lock of ours, or damaged: held for a lease from when it was written.
            expires = found.meta["last_modified"].timestamp() + self.seconds
        now = self._clock()
        if expires > now:
            who = f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"
            raise ArchiveLocked(
                f"another osvi-archiver run holds this archive ({who}; its lease {self._shown} "
                f"runs {expires - now:.0f} s more unless renewed); try again later"
            )
        version = _version_of(found.meta)
        try:
            self._version = obstore.put(self._store, self.key, self._body(), mode=version)
        except PreconditionError:
            raise ArchiveLocked(
                f"another run took over the expired lease {self._shown} first; try again later"
            ) from None
        except Exception as exc:
            raise _failed(exc, self._shown, "take over") from exc
        log.warning(
            "took over the lease %s of a run that stopped renewing it (host %s, pid %s)",
            self._shown,
            holder.get("host", "?"),
            holder.get("pid", "?"),
            extra={"event": "lease_taken_over"},
        )
        return True

    def renew(self) -> None:
        """Extend the lease; ArchiveLocked when another run holds it now."""
        assert self._version is not None
        try:
            mode = _version_of(self._version)
            self._version = obstore.put(self._store, self.key, self._body(), mode=mode)
        except (PreconditionError, FileNotFoundError):
            raise ArchiveLocked(
                f"this run lost its lease {self._shown} (another run took it over after this "
                "one stopped renewing it): stopping"
            ) from None

    def release(self) -> None:
        """Delete the lock object if it is still ours (a run that took it over keeps it)."""
        if self._version is None:
            return
        self._version = None
        with contextlib.suppress(Exception):
            if _holder(bytes(obstore.get(self._store, self.key).bytes())).get("owner") == (
                self._owner
            ):
                obstore.delete(self._store, self.key)

    def lost(self) -> ArchiveLocked | None:
        """Why this run no longer holds the lease (None: it does)."""
        return self._lost

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Called once, on the loop, when the lease is lost (the run cancels its work)."""
        self._callbacks.append(callback)

    def _lose(self, why: ArchiveLocked) -> None:
        if self._lost is None:
            self._lost = why
            log.error("%s", why, extra={"event": "lease_lost"})
            for callback in self._callbacks:
                callback()

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease every third of it while the body runs (from right after the lock
        is taken: the state's restore included). The lease is lost when another run holds it
        now, and also when this run could not renew it for most of a lease (the store or the
        network down: another run may take it over meanwhile, so this one must stop writing
        before that can happen)."""
        renewed = self._clock()

        async def renewing() -> None:
            nonlocal renewed
            while self._lost is None:
                await asyncio.sleep(self.seconds / 3)
                try:
                    await asyncio.to_thread(self.renew)
                    renewed = self._clock()
                except ArchiveLocked as exc:
                    self._lose(exc)
                except Exception as exc:
                    log.warning("could not renew the lease %s: %s", self._shown, reason(exc),
                                extra={"event": "lease_renewal"})  # fmt: skip
                    if self._clock() - renewed > self.seconds * FENCE:
                        self._lose(ArchiveLocked(
                            f"this run could not renew its lease {self._shown} for "
                            f"{self._clock() - renewed:.0f} s ({reason(exc)}): stopping before "
                            "another run may take it over"))  # fmt: skip

        task = asyncio.create_task(renewing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


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
