"""The fake account's calls and their recordings, generated deterministically from a seed.

Pure data, no I/O: the API face renders these calls and the recording host serves their bytes.
"""

from __future__ import annotations

import functools
import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

IST = timezone(timedelta(hours=5, minutes=30), "IST")
STATUSES = ("picked", "not_picked", "failed", "busy", "voicemail", "in_progress")
_STATUS_WEIGHTS = (70, 10, 5, 5, 5, 5)
# Calls nobody answered: no call_picked_at and no recording (osvi-api/README.md).
UNANSWERED = frozenset({"not_picked", "failed", "busy"})
# Answered but still running: the recording does not exist yet.
NO_RECORDING_YET = frozenset({"in_progress"})
AGENT_COUNT = 5

# An MP4 `ftyp` box (M4A brand) as real audio files start, then an `mdat` box header.
FTYP = b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isommp42"
_MDAT_HEADER_LEN = 8
# The payload repeats a pseudo-random block; a prime length keeps a resume at a wrong but
# chunk-aligned offset from reproducing the right bytes by accident.
_BLOCK_LEN = 262_139


def agent_uuids(seed: int) -> list[str]:
    rng = random.Random(f"{seed}:agents")
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(AGENT_COUNT)]


@dataclass(frozen=True)
class FakeCall:
    """One call on the fake account, with what the API shows of it."""

    call_id: str
    index: int
    agent_uuid: str
    status: str
    call_type: str
    phone_number: str
    duration_seconds: int | None
    campaign_id: int | None
    campaign_upload_id: int | None
    created_at: datetime
    call_picked_at: datetime | None
    size: int

    @property
    def answered(self) -> bool:
        return self.status not in UNANSWERED

    @property
    def has_recording(self) -> bool:
        """Whether a recording exists, before any not-available or pending fault."""
        return self.answered and self.status not in NO_RECORDING_YET

    def list_item(self) -> dict[str, Any]:
        """The call as `GET /v1/calls` shows it; timestamps in IST as the real API writes them."""
        agent_no = self.index % AGENT_COUNT
        return {
            "call_id": self.call_id,
            "agent_uuid": self.agent_uuid,
            "agent_name": f"Agent {agent_no + 1}",
            "phone_number": self.phone_number,
            "from_number": "+918000000000",
            "status": self.status,
            "call_type": self.call_type,
            "duration_seconds": self.duration_seconds,
            "call_ended_by": "agent" if self.answered else None,
            "call_ended_reason": "completed" if self.answered else self.status,
            "campaign_id": self.campaign_id,
            "campaign_upload_id": self.campaign_upload_id,
            "tag": {"id": agent_no, "name": f"tag-{agent_no}", "color_code": "#336699"},
            "created_at": _iso(self.created_at),
            "call_picked_at": _iso(self.call_picked_at) if self.call_picked_at else None,
        }

    def detail(self) -> dict[str, Any]:
        """The call as `GET /v1/call/{id}` shows it."""
        return {
            **self.list_item(),
            "caller_name": f"Caller {self.index}",
            "retry_count": self.index % 3,
            "summary": f"Fake call number {self.index}." if self.answered else None,
            "data_captured": {"intent": "demo"} if self.answered else {},
            "post_call_analysis": {"sentiment": "neutral"} if self.answered else {},
        }

    def transcript(self) -> list[dict[str, Any]]:
        """Transcript turns; the real turn schema is unpublished, so keep it loose."""
        if not self.has_recording:
            return []
        return [
            {"role": "agent", "text": "Hello, this is OSVI.", "start": 0.0},
            {"role": "user", "text": f"Hi, call {self.index} here.", "start": 2.5},
        ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(IST).isoformat(timespec="seconds")


def make_call(
    seed: int, index: int, created_at: datetime, size_min: int, size_max: int
) -> FakeCall:
    """The `index`-th call of the account seeded `seed`: the same inputs give the same call."""
    rng = random.Random(f"{seed}:call:{index}")
    call_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    status = rng.choices(STATUSES, weights=_STATUS_WEIGHTS)[0]
    agents = agent_uuids(seed)
    answered = status not in UNANSWERED
    picked_at = created_at + timedelta(seconds=rng.randint(3, 40)) if answered else None
    return FakeCall(
        call_id=call_id,
        index=index,
        agent_uuid=agents[index % AGENT_COUNT],
        status=status,
        call_type=rng.choice(("inbound", "outbound")),
        phone_number=f"+9198{rng.randint(0, 99_999_999):08d}",
        duration_seconds=rng.randint(20, 900) if answered else 0,
        campaign_id=1 + index % 3,
        campaign_upload_id=10 + index % 7,
        created_at=created_at,
        call_picked_at=picked_at,
        size=rng.randint(size_min, size_max),
    )


def generate_calls(
    seed: int, count: int, end_time: datetime, days: float, size_min: int, size_max: int
) -> list[FakeCall]:
    """`count` calls created at random moments within `days` before `end_time`."""
    calls = []
    span = days * 86_400
    for index in range(count):
        offset = random.Random(f"{seed}:when:{index}").random() * span
        created = (end_time - timedelta(seconds=offset)).replace(microsecond=0)
        calls.append(make_call(seed, index, created, size_min, size_max))
    return calls


def utc_from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class RecordingBody:
    """The bytes of one call's recording, readable at any offset without holding them all."""

    def __init__(self, seed: int, call_id: str, size: int) -> None:
        self.size = size
        self._seed = seed
        self._call_id = call_id
        payload = size - len(FTYP) - _MDAT_HEADER_LEN
        self._head = FTYP + (payload + _MDAT_HEADER_LEN).to_bytes(4, "big") + b"mdat"
        self._block_len = min(_BLOCK_LEN, payload)

    def _block(self) -> bytes:
        return _payload_block(self._seed, self._call_id, self._block_len)

    def read(self, start: int, length: int) -> bytes:
        """Bytes [start, start + length) clipped to the body."""
        end = min(self.size, start + length)
        out = bytearray()
        if start < len(self._head):
            out += self._head[start:end]
            start = len(self._head)
        block = self._block()
        while start < end:
            pos = (start - len(self._head)) % self._block_len
            take = min(self._block_len - pos, end - start)
            out += block[pos : pos + take]
            start += take
        return bytes(out)

    def md5_hex(self) -> str:
        digest = hashlib.md5(usedforsecurity=False)
        for offset in range(0, self.size, 1 << 20):
            digest.update(self.read(offset, 1 << 20))
        return digest.hexdigest()

    def sha256_hex(self) -> str:
        digest = hashlib.sha256()
        for offset in range(0, self.size, 1 << 20):
            digest.update(self.read(offset, 1 << 20))
        return digest.hexdigest()


@functools.lru_cache(maxsize=128)
def _payload_block(seed: int, call_id: str, length: int) -> bytes:
    return random.Random(f"{seed}:{call_id}:audio").randbytes(length)
