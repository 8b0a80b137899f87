"""The embedded fake OSVI service: API face and S3-like recording host on loopback (SPEC §9).

Used by `osvi-archiver demo`, `osvi-archiver fake-server`, the test suite and the benchmarks.
The server (aiohttp's web side, a tenth of a second to import) is loaded on first use only:
`osvi-archiver run` reads the fake's command-line options, never starts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archiver.fake.calls import FakeCall
from archiver.fake.config import FakeConfig, Fault, FaultKind, parse_fault
from archiver.fake.stats import FakeStats

if TYPE_CHECKING:
    from archiver.fake.server import FakeOSVI, fake_in_thread


def __getattr__(name: str) -> Any:
    if name in ("FakeOSVI", "fake_in_thread"):
        from archiver.fake import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
