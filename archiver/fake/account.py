"""The fake account's mutable state shared by both faces: calls, fault book-keeping, counters."""

from __future__ import annotations

import bisect
import dataclasses
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import datetime

from archiver.fake.calls import FakeCall, RecordingBody, generate_calls, make_call, utc_from_epoch
from archiver.fake.config import CALL_PROPERTIES, FakeConfig, FaultKind
from archiver.fake.stats import FakeStats


class FakeAccount:
    """Calls by id (newest first for listings), which faults fired, and the counters."""

    def __init__(self, config: FakeConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.stats = FakeStats()
        end = utc_from_epoch(config.end_time if config.end_time is not None else clock())
        self.end_time = end
        self._calls: dict[str, FakeCall] = {}
        self._fired: Counter[tuple[FaultKind, str]] = Counter()
        self._recording_asks: Counter[str] = Counter()
        self._md5: dict[str, str] = {}
        self._recent: deque[float] = deque()  # API request times, for api_rate_limit
        for call in generate_calls(
            config.seed, config.calls, end, config.days, config.size_min, config.size_max
        ):
            self._calls[call.call_id] = call
        self._next_index = config.calls
        self._newest_first: list[FakeCall] | None = None  # the listing's order, kept
        self._by_pick: list[FakeCall] | None = None  # answered calls by call_picked_at
        self._pick_times: list[datetime] = []
        self._repeats_left = config.list_repeat_pages

    def repeats_page(self) -> bool:
        """Whether this answer to a page >= 2 repeats the page before it (list_repeat_pages)."""
        if self._repeats_left <= 0:
            return False
        self._repeats_left -= 1
        return True

    @property
    def calls(self) -> list[FakeCall]:
        """All calls, newest first (by `created_at`, then index)."""
        if self._newest_first is None:
            self._newest_first = sorted(self._calls.values(), key=_newest, reverse=True)
        return self._newest_first

    def picked_between(self, low: datetime | None, high: datetime | None) -> list[FakeCall]:
        """The calls picked up within [low, high], newest first; every call when neither bound
        is given (a listing of 100,000 calls answers each window from an index, not a sort)."""
        if low is None and high is None:
            return self.calls
        if self._by_pick is None:
            pairs = sorted(
                ((c.call_picked_at, c) for c in self._calls.values() if c.call_picked_at),
                key=lambda pair: pair[0],
            )
            self._pick_times = [at for at, _ in pairs]
            self._by_pick = [call for _, call in pairs]
        first = 0 if low is None else bisect.bisect_left(self._pick_times, low)
        last = len(self._by_pick) if high is None else bisect.bisect_right(self._pick_times, high)
        return sorted(self._by_pick[first:last], key=_newest, reverse=True)

    def get(self, call_id: str) -> FakeCall | None:
        """The call for a path id; malformed and unknown ids both give None."""
        try:
            canonical = str(uuid.UUID(call_id))
        except ValueError:
            return None
        return self._calls.get(canonical)

    def add_calls(
        self, count: int, created_at: datetime | None = None, picked_at: datetime | None = None
    ) -> list[FakeCall]:
        """New calls just ended (or created at `created_at`), as during a live sync. Created 45 s
        ago by default, so that their call_picked_at (up to 40 s after) is not in the future;
        `picked_at`: every answered one picked up at that moment (a burst)."""
        when = created_at or utc_from_epoch(self.clock() - 45)
        added = []
        for _ in range(count):
            cfg = self.config
            call = make_call(cfg.seed, self._next_index, when, cfg.size_min, cfg.size_max)
            if picked_at is not None and call.call_picked_at is not None:
                call = dataclasses.replace(call, call_picked_at=picked_at)
            self._next_index += 1
            self._calls[call.call_id] = call
            added.append(call)
        self._newest_first = self._by_pick = None
        return added

    def fires(self, kind: FaultKind, subject: str) -> bool:
        """Whether fault `kind` fires now for `subject`, counting it if so."""
        fault = self.config.fault(kind)
        if not fault.hits(self.config.seed, kind, subject):
            return False
        if kind not in CALL_PROPERTIES:
            if fault.times is not None and self._fired[kind, subject] >= fault.times:
                return False
            self._fired[kind, subject] += 1
        self.stats.faults_fired[kind.value] += 1
        return True

    def recording_available(self, call: FakeCall) -> bool:
        """Answer one `/recording` ask: a pending call becomes available after enough asks."""
        if not call.has_recording or self.fires(FaultKind.NOT_AVAILABLE, call.call_id):
            return False
        self._recording_asks[call.call_id] += 1
        pending = self.config.fault(FaultKind.PENDING)
        if not pending.hits(self.config.seed, FaultKind.PENDING, call.call_id):
            return True
        if self._recording_asks[call.call_id] > self.config.pending_requests:
            return True
        self.stats.faults_fired[FaultKind.PENDING.value] += 1
        return False

    def over_rate(self) -> bool:
        """Whether this API request goes over `api_rate_limit` in the trailing second."""
        limit = self.config.api_rate_limit
        if limit is None:
            return False
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        if len(self._recent) >= limit:
            return True
        self._recent.append(now)
        return False

    def body(self, call: FakeCall) -> RecordingBody:
        return RecordingBody(self.config.seed, call.call_id, call.size)

    def md5(self, call: FakeCall) -> str:
        """The body's MD5, computed once per call (1 GiB bodies take a while)."""
        if call.call_id not in self._md5:
            self._md5[call.call_id] = self.body(call).md5_hex()
        return self._md5[call.call_id]

    def expected_sha256(self, call_id: str) -> str:
        """What a byte-exact archive of this call must hash to (for tests)."""
        call = self.get(call_id)
        if call is None:
            raise KeyError(call_id)
        return self.body(call).sha256_hex()


def _newest(call: FakeCall) -> tuple[datetime, int]:
    return call.created_at, call.index
