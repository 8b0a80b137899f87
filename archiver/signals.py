"""How a run is stopped by a signal (§6): the first SIGHUP, SIGINT or SIGTERM cancels it (its
downloads in flight drop their `.part` files, then the outputs are written); a second one
exits at once. SIGHUP is one of them: an ssh session dropped during a backfill stops the run
cleanly instead of killing it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

from archiver.errors import DeadlineReached, Interrupted

log = logging.getLogger("archiver.run")

STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


class Signals:
    """What the signal handlers saw, and the task the first one cancels."""

    def __init__(self) -> None:
        self.received: list[Interrupted] = []
        self._task: asyncio.Task[None] | None = None
        # Set while the outputs are written: a second signal then waits for them (a few
        # seconds), so that the exit code, the report and the metrics still agree.
        self.finishing = False

    def stopping_for(self, budget: float) -> bool:
        """Whether the first signal came more than `budget` seconds ago (the outputs then
        cut a long manifest write short: what is left is the next run's)."""
        return bool(self.received) and time.monotonic() - self.received[0].at > budget

    def stops(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._task = task
        return task

    def deadline(self, seconds: float, shown: str) -> None:
        """Stop the run as a signal would once `seconds` have passed (--max-duration)."""
        asyncio.get_running_loop().call_later(seconds, self._expire, shown)

    def _expire(self, shown: str) -> None:
        if self.received or self.finishing:
            return  # stopped already, or done: the outputs are being written
        self.received.append(DeadlineReached(shown, time.monotonic()))
        log.warning(
            "--max-duration (%s) reached: stopping; in-flight downloads are cancelled, the "
            "outputs written, a rerun continues",
            shown,
            extra={"event": "max_duration"},
        )
        if self._task is not None:
            self._task.cancel()

    def handle(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if (
            self.received
            and isinstance(self.received[0], DeadlineReached)
            and not any(not isinstance(r, DeadlineReached) for r in self.received)
        ):
            # The first real signal after --max-duration stopped the run: a first signal
            # still (a supervisor's limit set to the same time), not a second one to die on.
            self.received.append(Interrupted(signum, name, time.monotonic()))
            log.warning("%s while stopping at --max-duration: still stopping cleanly", name,
                        extra={"event": "signal", "signal": name})  # fmt: skip
            if self._task is not None:
                self._task.cancel()
            return
        if self.received and self.finishing:
            print(
                f"osvi-archiver: {name} again; exiting as soon as the manifest, run report "
                "and metrics are written",
                file=sys.stderr,
                flush=True,
            )
            return
        if self.received:
            print(f"osvi-archiver: {name} again, exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received.append(Interrupted(signum, name, time.monotonic()))
        log.warning(
            "%s: stopping; in-flight downloads are cancelled (again to exit at once)",
            name,
            extra={"event": "signal", "signal": name},
        )
        if self._task is not None:
            self._task.cancel()  # a task already done (the outputs being written) ignores it


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Signals]:
    """First SIGHUP/SIGINT/SIGTERM: cancel the run (in-flight downloads drop their .part
    files, then the manifest and report are written). A second one: exit at once. SIGHUP (an
    ssh session dropped during a backfill) is one too: the run stops cleanly, not killed.

    The handlers stay until the outputs are written, so a signal that arrives meanwhile is not
    lost: the run then ends interrupted, and the report and metrics are written again."""
    loop = asyncio.get_running_loop()
    signals = Signals()
    installed = []
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue  # ignored on purpose: `nohup` (SIGHUP), a background job (SIGINT)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not main thread
            loop.add_signal_handler(signum, signals.handle, signum)
            installed.append(signum)
    try:
        yield signals
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
