"""Which signals are one request to stop and which a second one (engine/signals.py): the time is a
hand-moved clock, the terminal a flag, the exit at once a recorder."""

from __future__ import annotations

import asyncio
import signal

import pytest

from archiver.engine.signals import REPEAT_WINDOW, Signals
from archiver.errors import DeadlineReached

SIGINT, SIGTERM, SIGHUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP


class Harness:
    def __init__(self, *, at_terminal: bool = False) -> None:
        self.now = 100.0
        self.exits: list[int] = []
        self.signals = Signals(
            clock=lambda: self.now, at_terminal=lambda: at_terminal, exit_now=self.exits.append
        )

    def send(self, signum: int, after: float = 0.0) -> None:
        self.now += after
        self.signals.handle(signum)

    @property
    def codes(self) -> list[int]:
        return [r.exit_code for r in self.signals.received]


def test_sigterm_twice_at_once_as_timeout_sends_it_is_one_request() -> None:
    """coreutils `timeout`: the child, then its process group (the child again)."""
    run = Harness()
    run.send(SIGTERM)
    run.send(SIGTERM, after=0.001)
    run.send(SIGTERM, after=REPEAT_WINDOW - 0.1)
    assert run.exits == []
    assert run.codes == [143]


def test_the_same_signal_after_the_window_exits_at_once() -> None:
    run = Harness()
    run.send(SIGTERM)
    run.send(SIGTERM, after=REPEAT_WINDOW)
    assert run.exits == [143]


def test_the_window_counts_from_the_request_not_from_its_repeats() -> None:
    run = Harness()
    run.send(SIGHUP)
    for _ in range(3):  # a supervisor repeating itself every second
        run.send(SIGHUP, after=1.0)
    assert run.exits == [129]


def test_another_signal_at_once_is_a_second_request() -> None:
    run = Harness()
    run.send(SIGINT)
    run.send(SIGTERM, after=0.001)
    assert run.exits == [143]


def test_sigint_twice_without_a_terminal_is_one_request() -> None:
    """`timeout -s INT`, or a wrapper forwarding the SIGINT its group also received."""
    run = Harness(at_terminal=False)
    run.send(SIGINT)
    run.send(SIGINT, after=0.01)
    assert run.exits == []
    assert run.codes == [130]


def test_ctrl_c_twice_at_a_terminal_exits_at_once_however_fast() -> None:
    """One SIGINT per key press: a person pressing Ctrl-C twice wants out now."""
    run = Harness(at_terminal=True)
    run.send(SIGINT)
    run.send(SIGINT, after=0.05)
    assert run.exits == [130]


def test_sigterm_twice_at_a_terminal_is_still_one_request() -> None:
    run = Harness(at_terminal=True)
    run.send(SIGTERM)
    run.send(SIGTERM, after=0.001)
    assert run.exits == []


def test_a_second_request_while_the_outputs_are_written_waits_for_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = Harness()
    run.send(SIGTERM)
    run.signals.finishing = True
    run.send(SIGINT, after=0.1)
    assert run.exits == []
    assert "exiting as soon as the manifest" in capsys.readouterr().err


async def test_a_repeated_sigterm_after_the_deadline_is_one_request() -> None:
    """--max-duration stopped the run; a supervisor's `timeout` at the same moment sends
    SIGTERM twice: the first is still a first signal, the second its repeat."""
    run = Harness()
    task = asyncio.ensure_future(asyncio.sleep(30))
    run.signals.stops(task)
    run.signals._expire("2s")
    run.send(SIGTERM, after=0.5)
    run.send(SIGTERM, after=0.001)
    assert run.exits == []
    assert isinstance(run.signals.received[0], DeadlineReached)
    assert run.codes == [124, 143]
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_stopping_budget_is_measured_on_the_given_clock() -> None:
    run = Harness()
    run.send(SIGTERM)
    assert not run.signals.stopping_for(2.0)
    run.now += 2.5
    assert run.signals.stopping_for(2.0)
