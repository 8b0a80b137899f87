"""How a run is stopped by a signal (§6): the first SIGHUP, SIGINT or SIGTERM is a request to
stop, which cancels the run (its downloads in flight drop their `.part` files, then the
outputs are written); a second request exits at once. SIGHUP is one of them: an ssh session
dropped during a backfill stops the run cleanly instead of killing it.

The same signal again within REPEAT_WINDOW (3 s) of the request is that request delivered
twice, not a second one: coreutils `timeout` sends its signal to the child and then to its
whole process group, a hang-up reaches the process from the terminal and again from the
shell, and a supervisor may signal the process and its group. Another signal, or the same one
3 s or more later, is a second request. Ctrl-C at a terminal is always a person's: the
terminal sends one SIGINT per key press, to its foreground process group only, and a person
who presses Ctrl-C twice wants out now however fast they pressed. So while the process is in
its terminal's foreground process group, a second SIGINT exits at once, whenever it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

from archiver.errors import DeadlineReached, Interrupted

log = logging.getLogger("archiver.engine.lifecycle")

STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
REPEAT_WINDOW = 3.0  # seconds in which the same signal again is the same request


def in_terminal_foreground() -> bool:
    """Whether this process is in the foreground process group of its controlling terminal:
    the group the terminal sends a Ctrl-C's SIGINT to. False without a terminal (cron,
    systemd, a container) and in a background group (`timeout` without --foreground, `&`)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class Signals:
    """What the signal handlers saw, and the task the first one cancels. The clock (the
    monotonic one), the look at the terminal and the exit are given in tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        at_terminal: Callable[[], bool] = in_terminal_foreground,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self.received: list[Interrupted] = []
        self._task: asyncio.Task[None] | None = None
        self._clock = clock
        self._at_terminal = at_terminal
        self._exit_now = exit_now
        # Set while the outputs are written: a second signal then waits for them (a few
        # seconds), so that the exit code, the report and the metrics still agree.
        self.finishing = False

    def stopping_for(self, budget: float) -> bool:
        """Whether the first signal came more than `budget` seconds ago (the outputs then
        cut a long manifest write short: what is left is the next run's)."""
        return bool(self.received) and self._clock() - self.received[0].at > budget

    def stops(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._task = task
        return task

    def deadline(self, seconds: float, shown: str) -> None:
        """Stop the run as a signal would once `seconds` have passed (--max-duration)."""
        asyncio.get_running_loop().call_later(seconds, self._expire, shown)

    def _expire(self, shown: str) -> None:
        if self.received or self.finishing:
            return  # stopped already, or done: the outputs are being written
        self.received.append(DeadlineReached(shown, self._clock()))
        log.warning(
            "--max-duration (%s) reached: stopping; in-flight downloads are cancelled, the "
            "outputs written, a rerun continues",
            shown,
            extra={"event": "max_duration"},
        )
        self._cancel()

    def handle(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.received and self._same_request(signum):
            log.info(
                "%s again within %g s: the same request, delivered twice (still stopping)",
                name,
                REPEAT_WINDOW,
                extra={"event": "signal_repeated", "signal": name},
            )
            return
        if self.received and not self._requested():
            # The first real signal after --max-duration stopped the run: a first signal
            # still (a supervisor's limit set to the same time), not a second one to die on.
            self.received.append(Interrupted(signum, name, self._clock()))
            log.warning("%s while stopping at --max-duration: still stopping cleanly", name,
                        extra={"event": "signal", "signal": name})  # fmt: skip
            self._cancel()
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
            self._exit_now(128 + signum)
            return
        self.received.append(Interrupted(signum, name, self._clock()))
        log.warning(
            "%s: stopping; in-flight downloads are cancelled (%s)",
            name,
            self._second(signum, name),
            extra={"event": "signal", "signal": name},
        )
        self._cancel()

    def _requested(self) -> Interrupted | None:
        """The signal that asked the run to stop (not --max-duration), if one did."""
        asked = [r for r in self.received if not isinstance(r, DeadlineReached)]
        return asked[-1] if asked else None

    def _same_request(self, signum: int) -> bool:
        """Whether `signum` now is the request already taken, delivered again (REPEAT_WINDOW)."""
        asked = self._requested()
        if asked is None or asked.exit_code != 128 + signum:
            return False
        if signum == signal.SIGINT and self._at_terminal():
            return False  # each Ctrl-C is a key press of its own
        return self._clock() - asked.at < REPEAT_WINDOW

    def _second(self, signum: int, name: str) -> str:
        """How to exit at once, as the first signal's message says it."""
        if signum == signal.SIGINT and self._at_terminal():
            return "Ctrl-C again to exit at once"
        return f"another signal, or {name} again after {REPEAT_WINDOW:g} s, exits at once"

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()  # a task already done (the outputs being written) ignores it


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Signals]:
    """First SIGHUP/SIGINT/SIGTERM: cancel the run (in-flight downloads drop their .part
    files, then the manifest and report are written). A second request (the module's
    docstring says which signals are one): exit at once. SIGHUP (an ssh session dropped
    during a backfill) is one too: the run stops cleanly, not killed.

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
