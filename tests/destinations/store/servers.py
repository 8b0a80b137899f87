"""Starting a store's emulator for the slow tests (Azurite, fake-gcs-server): a free port on
loopback, and the wait until it listens (or the test fails, saying how it ended)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_listening(process: subprocess.Popen[bytes], port: int, name: str, said: str = "") -> None:
    """Until 127.0.0.1:`port` takes connections (10 s at most); `said`: where its output is."""
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}{said}")
        time.sleep(0.05)
    pytest.fail(f"{name} did not listen on 127.0.0.1:{port} within 10 s{said}")
