"""Running `osvi-archiver` as a user does: a real process, real stdin, real exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from archiver.fake import FakeOSVI


def env_for(fake: FakeOSVI, **more: str) -> dict[str, str]:
    """The environment that points the tool at `fake`, with its token."""
    return {"OSVI_BASE_URL": fake.base_url, "OSVI_API_TOKEN": fake.token, **more}


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str


async def osvi(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    deadline: float = 60,
) -> Finished:
    """`python -m archiver ARGS` with a clean OSVI_* environment plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OSVI_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "archiver",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), deadline)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def start_osvi(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> asyncio.subprocess.Process:
    """`python -m archiver ARGS` left running, for signals and kills; stdin written and closed."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OSVI_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "archiver",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    assert process.stdin is not None
    process.stdin.write(stdin or b"")
    await process.stdin.drain()
    process.stdin.close()
    return process


async def finish(process: asyncio.subprocess.Process, deadline: float = 30) -> Finished:
    out, err = await asyncio.wait_for(process.communicate(), deadline)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())
