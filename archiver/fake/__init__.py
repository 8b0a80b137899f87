"""The embedded fake OSVI service: API face and S3-like recording host on loopback (SPEC §9).

Used by `osvi-archiver demo`, `osvi-archiver fake-server`, the test suite and the benchmarks.
The server (aiohttp's web side, a tenth of a second to import) is loaded on first use only:
`osvi-archiver run` reads the fake's command-line options, never starts it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archiver.fake.calls import FakeCall
    from archiver.fake.config import FakeConfig, Fault, FaultKind, parse_fault
    from archiver.fake.server import FakeOSVI, fake_in_thread
    from archiver.fake.stats import FakeStats

# Each name from its module on first use: the command line's parser reads fake/options.py
# (the fake-server's flags) at every start, and needs none of these (start-up, issue 23).
_HOMES = {
    "FakeCall": "calls", "FakeConfig": "config", "Fault": "config", "FaultKind": "config",
    "parse_fault": "config", "FakeStats": "stats", "FakeOSVI": "server",
    "fake_in_thread": "server",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"archiver.fake.{home}"), name)


__all__ = [
    "FakeCall",
    "FakeConfig",
    "FakeOSVI",
    "FakeStats",
    "Fault",
    "FaultKind",
    "fake_in_thread",
    "parse_fault",
]
