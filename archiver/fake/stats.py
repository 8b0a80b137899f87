"""Counters of everything the fake saw, for tests and benchmarks (and `GET /_fake/stats`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS = 100_000  # bounded: benchmarks send millions of requests
# Endpoint names used in the counters.
RECORDING_URL = "recording"  # GET /v1/call/{id}/recording
LIST = "calls"  # GET /v1/calls
DETAIL = "call"  # GET /v1/call/{id}
TRANSCRIPT = "transcript"  # GET /v1/call/{id}/transcript
DOWNLOAD = "download"  # GET on the recording host


@dataclass
class CallStats:
    requests: Counter[str] = field(default_factory=Counter)  # by endpoint
    statuses: Counter[str] = field(default_factory=Counter)  # "endpoint:status"
    bytes_sent: int = 0
    downloads_complete: int = 0  # bodies sent to their last byte

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "bytes_sent": self.bytes_sent,
            "downloads_complete": self.downloads_complete,
        }


@dataclass
class Leak:
    """A credential seen by the recording host: the header name only, never its value."""

    path: str
    header: str


@dataclass
class FakeStats:
    requests: Counter[str] = field(default_factory=Counter)  # by endpoint
    statuses: Counter[str] = field(default_factory=Counter)  # "endpoint:status"
    calls: dict[str, CallStats] = field(default_factory=dict)
    leaks: list[Leak] = field(default_factory=list)
    expired_uses: int = 0  # requests with a URL past its expiry
    bad_signatures: int = 0
    faults_fired: Counter[str] = field(default_factory=Counter)
    # (monotonic time, endpoint, status) of the first requests, to check pacing and pauses.
    events: list[tuple[float, str, int]] = field(default_factory=list)

    def call(self, call_id: str) -> CallStats:
        return self.calls.setdefault(call_id, CallStats())

    def record(self, endpoint: str, status: int, call_id: str | None = None) -> None:
        self.requests[endpoint] += 1
        self.statuses[f"{endpoint}:{status}"] += 1
        if len(self.events) < MAX_EVENTS:
            self.events.append((time.monotonic(), endpoint, status))
        if call_id is not None:
            stats = self.call(call_id)
            stats.requests[endpoint] += 1
            stats.statuses[f"{endpoint}:{status}"] += 1

    @property
    def bytes_sent(self) -> int:
        return sum(c.bytes_sent for c in self.calls.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "bytes_sent": self.bytes_sent,
            "leaks": len(self.leaks),
            "leak_details": [{"path": k.path, "header": k.header} for k in self.leaks],
            "expired_uses": self.expired_uses,
            "bad_signatures": self.bad_signatures,
            "faults_fired": dict(self.faults_fired),
            "calls": {cid: c.to_json() for cid, c in sorted(self.calls.items())},
        }
