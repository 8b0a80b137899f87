"""The embedded fake OSVI service: API face and S3-like recording host on loopback (SPEC §9).

Used by `osvi-archiver demo`, `osvi-archiver fake-server`, the test suite and the benchmarks.
"""

from archiver.fake.calls import FakeCall
from archiver.fake.config import FakeConfig, Fault, FaultKind, parse_fault
from archiver.fake.server import FakeOSVI, fake_in_thread
from archiver.fake.stats import FakeStats

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
