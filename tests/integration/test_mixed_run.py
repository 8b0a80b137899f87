"""Issue 11's "done when": a run over 200 calls with one of each bad case mixed in archives
every good call, marks each bad one with a clear kind, exits 1, and its report and metrics
textfile say 1 too."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from archiver.engine.assembly import RunOptions
from archiver.engine.clocks import Clocks
from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from archiver.fake.config import OMIT
from archiver.transfer import download as download_module
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import assert_byte_exact, manifest_of, quick_sleep
from tests.integration.wire_helpers import run_ids, settings_at

KNOBS: dict[str, tuple[str, object]] = {
    # case: (FakeConfig field, value for that call)
    "malformed host": ("recording_urls", "https://a..b/x.mp4"),
    "bad IDNA label": ("recording_urls", "https://xn--/x.mp4"),
    "plain http elsewhere": ("recording_urls", "http://198.51.100.7/x.mp4"),
    "redirect to plain http": ("redirects", "http://198.51.100.7/x.mp4"),
    "redirect loop": ("redirects", "{again}"),
    "followed redirect": ("redirects", "{signed}"),
    "NaN lifetime": ("expires_in", math.nan),
    "no lifetime": ("expires_in", OMIT),
    "zero lifetime": ("expires_in", 0),
    "no agent, no date": ("null_fields", frozenset({"agent_uuid", "call_picked_at", "created_at"})),
}
FAULTS = {
    "trickle": FaultKind.TRICKLE,
    "endless": FaultKind.ENDLESS,
    "gzip if asked": FaultKind.GZIP,
    "token echoed": FaultKind.API_ECHO,
    "huge answer": FaultKind.API_HUGE,
    "never audio": FaultKind.NOT_AUDIO,
    "host always 500": FaultKind.REC_500,
    "no recording": FaultKind.NOT_AVAILABLE,
}
EXPECTED = {
    "malformed host": ("failed", "unsafe_url"),
    "bad IDNA label": ("failed", "unsafe_url"),
    "plain http elsewhere": ("failed", "unsafe_url"),
    "redirect to plain http": ("failed", "unsafe_url"),
    "redirect loop": ("failed", "recording_refused"),
    "followed redirect": ("archived", None),
    "NaN lifetime": ("archived", None),
    "no lifetime": ("archived", None),
    "zero lifetime": ("failed", "url_expired"),
    "no agent, no date": ("archived", None),
    "trickle": ("failed", "too_slow"),
    "endless": ("failed", "too_large"),
    "gzip if asked": ("archived", None),
    "token echoed": ("failed", "api_rejected"),
    "huge answer": ("failed", "api_bad_response"),
    "never audio": ("failed", "not_audio"),
    "host always 500": ("failed", "recording_server_error"),
    "no recording": ("pending", "pending"),  # a young call: tried again by later runs
    "a bug": ("failed", "internal_error"),
}


def picked(fake: FakeOSVI) -> list[str]:
    return [c.call_id for c in fake.calls if c.status == "picked"]


async def test_two_hundred_calls_with_one_of_each_bad_case(
    make_fake: FakeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = dict(calls=320, size_min=4096, size_max=8192, trickle_rate=2048, huge_body=16 << 20)
    ids = picked(FakeOSVI(FakeConfig(**base)))  # type: ignore[arg-type]
    assert len(ids) >= 200
    cases = dict(zip([*KNOBS, *FAULTS, "a bug"], ids, strict=False))
    config = FakeConfig(**base)  # type: ignore[arg-type]
    for case, (knob, value) in KNOBS.items():
        getattr(config, knob)[cases[case]] = value
    config.faults = {
        kind: Fault(calls=frozenset({cases[case]}), times=None) for case, kind in FAULTS.items()
    }
    fake = await make_fake(config)
    original = download_module.Transfer.verify

    def verify(self: download_module.Transfer) -> None:
        if cases["a bug"] in str(self.final):
            raise ZeroDivisionError("an unexpected bug")
        original(self)

    monkeypatch.setattr(download_module.Transfer, "verify", verify)
    metrics = tmp_path / "osvi.prom"
    out = tmp_path / "archive"
    settings = settings_at(
        fake.base_url, out, fake.token,
        metrics_file=metrics, concurrency=16, max_attempts=3, min_speed="256KiB",
        min_speed_time="0.3s", max_recording_size="1MiB", with_metadata=True,
        layout="{agent_uuid}/{yyyy}/{call_id}{ext}",
    )  # fmt: skip
    chosen = ids[:200]
    result = await run_ids(
        settings, [*chosen, "not-a-call-id"], RunOptions(clocks=Clocks(sleep=quick_sleep))
    )

    assert result.exit_code == 1
    [report] = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert report["exit_code"] == 1
    assert re.search(r"^osvi_archiver_exit_code\{[^}]*\} 1$", metrics.read_text(), re.M)
    assert report["invalid_rows"][0]["reason"] == "not a UUID"
    entries: dict[str, dict[str, Any]] = {c["call_id"]: c for c in manifest_of(out)["calls"]}
    for case, (status, kind) in EXPECTED.items():
        entry = entries[cases[case]]
        said = (entry["status"], entry["error"]["kind"] if entry["error"] else None)
        assert said == (status, kind), (case, entry)
    bad = {cases[case] for case, (status, _) in EXPECTED.items() if status != "archived"}
    good = [call_id for call_id in chosen if call_id not in bad]
    assert len(good) == 200 - len(bad)
    assert_byte_exact(fake, out, good)
    assert entries[cases["no agent, no date"]]["path"].startswith("unknown/unknown/")
    assert fake.stats.leaks == []
    assert fake.token not in json.dumps(report)
