"""Start-up (issue 23): the commands that only read or print import what they need; `--help`,
`status` and `completion` load neither the HTTP client nor the display nor the retry policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiohttp", "rich", "tenacity", "obstore", "archiver.engine.lifecycle")
PROBE = """
import contextlib, io, json, sys
from archiver.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def loaded(*argv: str) -> list[str]:
    root = Path(__file__).resolve().parents[2]
    code = PROBE.format(heavy=repr(HEAVY))
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        check=True,
    )
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("run", "--help"), ("completion", "bash"), ("status", "--out", "{tmp}")],
    ids=["help", "run-help", "completion", "status"],
)
def test_a_command_that_only_reads_or_prints_starts_without_the_heavy_modules(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    assert loaded(*(a.format(tmp=tmp_path) for a in argv)) == []


@pytest.mark.parametrize("argv", [("--help",), ("sync", "--help"), ("completion", "zsh")])
def test_the_parser_is_built_without_the_settings_model(argv: tuple[str, ...]) -> None:
    """--help and completion need the flags' names and defaults, not pydantic (the table
    they come from is held to the model by tests/config/test_settings.py)."""
    root = Path(__file__).resolve().parents[2]
    code = PROBE.format(heavy=repr(("pydantic", "pydantic_settings", "asyncio")))
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True, text=True, timeout=60, cwd=root, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_probe_sees_them_when_a_command_needs_them(tmp_path: Path) -> None:
    # `run` without a token fails before any request, but only once it has loaded the run.
    found = loaded("run", "--out", str(tmp_path), "--dry-run", str(tmp_path / "none.csv"))
    assert "archiver.engine.lifecycle" in found or "tenacity" in found
