"""Grouped commits (§6 durability): the workers that open a `.part` or finish a call within
the same few milliseconds wait for one commit. It runs in a thread, one at a time: its fsync
(synchronous=FULL) can take a while behind other writes, and the event loop must not wait
for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from archiver.errors import LocalError

if TYPE_CHECKING:
    import asyncio

GROUP_WINDOW = 0.002  # how long a durable() waits to share its commit


class GroupCommit:
    def __init__(self, commit: Callable[[], None]) -> None:
        self._commit = commit  # from any thread (the state's Serial connection)
        self._group: asyncio.Future[None] | None = None
        self._committing: set[asyncio.Task[None]] = set()  # grouped commits under way
        self._lock: asyncio.Lock | None = None  # made by the loop's first commit

    async def durable(self) -> None:
        """Return once what was written before the call is committed (shared). (asyncio is
        imported here, where it is loaded: `status` opens a state and starts without it.)"""
        import asyncio

        if self._group is None:
            loop = asyncio.get_running_loop()
            self._group = loop.create_future()
            loop.call_later(GROUP_WINDOW, self._start_group)
        await asyncio.shield(self._group)

    async def settled(self) -> None:
        """Wait for the grouped commits under way."""
        import asyncio

        if self._committing:
            await asyncio.wait(list(self._committing))

    def _start_group(self) -> None:
        import asyncio

        group, self._group = self._group, None
        assert group is not None
        task = asyncio.get_running_loop().create_task(self._commit_group(group))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def _commit_group(self, group: asyncio.Future[None]) -> None:
        import asyncio

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                # The connection is shared with the loop's thread meanwhile; statements made
                # meanwhile join this commit or the next.
                await asyncio.to_thread(self._commit)
            except LocalError as exc:
                group.set_exception(exc)
            else:
                group.set_result(None)
