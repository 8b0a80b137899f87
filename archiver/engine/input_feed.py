"""The run's input handed to the event loop in blocks, read in a thread of its own.

A daemon thread advances the input iterator (stdin may block: a read blocked on a quiet stdin
must not keep the process from exiting after a signal) and appends what it reads to a buffer;
the loop takes everything the buffer holds at once. The loop is woken once per burst, not once
per id (a thread round trip per id was 90% of a million-id run), yet a slow producer
(`osvi-archiver list | osvi-archiver run -`) still has each id taken as soon as it comes.
The buffer holds at most AHEAD items: the input is read only as fast as the run uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator

from archiver.engine.decide import taken_first
from archiver.engine.inputs import InputItem
from archiver.engine.pipeline import Source, SourceFactory
from archiver.monitoring.counts import RunView
from archiver.osvi.api import OsviApi
from archiver.state.database import State

log = logging.getLogger("archiver.engine.lifecycle")

BLOCK = 1024  # items handed over at once, at most
AHEAD = 4 * BLOCK  # items read ahead of the run, at most


class BlockInput:
    def __init__(self, items: Iterator[InputItem]) -> None:
        self._items = items
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[InputItem] = deque()
        self._lock = threading.Condition()
        self._ready = asyncio.Event()  # set (from the thread) when the buffer stops being empty
        self._ended = False
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name="osvi-input", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the loop, not lost here
            self._error = exc
        finally:
            # Closed here, in the only thread that advances it, so that a run that stops
            # early releases its files at once rather than whenever it is collected.
            close = getattr(self._items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            with self._lock:
                self._ended = True
            self._wake()

    def _put(self, item: InputItem) -> bool:
        with self._lock:
            while len(self._buffer) >= AHEAD and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return False
            self._buffer.append(item)
            first = len(self._buffer) == 1
        if first:
            self._wake()
        return True

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be gone after a signal
            self._loop.call_soon_threadsafe(self._ready.set)

    async def next_block(self) -> list[InputItem] | None:
        """The next items read, as many as are there (at most BLOCK); None at the end."""
        while True:
            with self._lock:
                if self._buffer:
                    count = min(len(self._buffer), BLOCK)
                    block = [self._buffer.popleft() for _ in range(count)]
                    self._lock.notify()
                    return block
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                self._ready.clear()
            await self._ready.wait()

    def finished(self, item: object) -> None:
        """Nothing to do: an input has no watermark."""

    def close(self) -> None:
        """Stop reading (the thread ends at its next item; a blocked read dies with the
        process, the thread being a daemon)."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()


def run_input(
    items: Iterator[InputItem], *, retry_failed: bool = False, retry_not_available: bool = False
) -> SourceFactory:
    """The source of `run`: the calls the state holds for a retry first (§5.4: pending ones
    every run; with --retry-failed the failed ones too, and no input; with
    --retry-not-available as well, the not_available ones), then `items`."""

    def build(state: State, api: OsviApi, view: RunView) -> Source:
        first = taken_first(
            state, "run", retry_failed=retry_failed, retry_not_available=retry_not_available
        )
        if first:
            view.add_total(len(first))
        given = None if retry_failed else _Counted(items)
        return RunInput(_then(iter(first), given or iter(())), given)

    return build


class RunInput(BlockInput):
    """The run's input; at its end, a warning when the input given held no call id."""

    def __init__(self, items: Iterator[InputItem], given: _Counted | None) -> None:
        super().__init__(items)
        self._given = given

    async def next_block(self) -> list[InputItem] | None:
        block = await super().next_block()
        if block is None and self._given is not None and self._given.count == 0:
            log.warning(
                "the input held no call ids, so there was nothing to archive (an empty file, "
                "or stdin from /dev/null under cron?)",
                extra={"event": "empty_input"},
            )
            self._given = None  # said once
        return block


def _then(first: Iterator[InputItem], rest: Iterator[InputItem]) -> Iterator[InputItem]:
    """`first`, then `rest`: a generator, so that closing it closes the input too."""
    yield from first
    yield from rest


class _Counted(Iterator[InputItem]):
    """The input as given, counting its rows as they are read (in the input's thread)."""

    def __init__(self, items: Iterator[InputItem]) -> None:
        self._items = items
        self.count = 0

    def __next__(self) -> InputItem:
        item = next(self._items)
        self.count += 1
        return item

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()
