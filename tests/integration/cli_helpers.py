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


def clean_environ(**more: str) -> dict[str, str]:
    """This process's environment without any OSVI_* variable, plus `more`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OSVI_")}, **more}


async def launch(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: int | None = asyncio.subprocess.PIPE,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
    cwd: Path | None = None,
) -> asyncio.subprocess.Process:
    """`python -m archiver ARGS` as a user starts it, with a clean OSVI_* environment plus
    `env`: the one launcher of the tests."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "archiver",
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=clean_environ(**(env or {})),
        cwd=cwd,
    )


async def osvi(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    deadline: float = 60,
) -> Finished:
    """Run to its end: exit code, stdout, stderr."""
    given = asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    process = await launch(*args, env=env, stdin=given, cwd=cwd)
    out, err = await asyncio.wait_for(process.communicate(stdin), deadline)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def start_osvi(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> asyncio.subprocess.Process:
    """Left running, for signals and kills; stdin written and closed."""
    process = await launch(*args, env=env)
    assert process.stdin is not None
    process.stdin.write(stdin or b"")
    await process.stdin.drain()
    process.stdin.close()
    return process


async def finish(process: asyncio.subprocess.Process, deadline: float = 30) -> Finished:
    out, err = await asyncio.wait_for(process.communicate(), deadline)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())
