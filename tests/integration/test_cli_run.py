"""`osvi-archiver run` as a process: inputs, exit codes, messages (SPEC §2, §3, §6)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from archiver.destinations.lock import ArchiveLock
from archiver.fake import FakeConfig, FakeOSVI, Fault, FaultKind
from tests.conftest import FakeFactory
from tests.integration.archive_helpers import assert_byte_exact, picked_ids
from tests.integration.cli_helpers import env_for, launch, osvi


def small(calls: int) -> FakeConfig:
    return FakeConfig(calls=calls, size_min=8 * 1024, size_max=32 * 1024)


async def test_ids_on_stdin_are_archived_and_summarised(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(12))
    ids = "\n".join(c.call_id.upper() for c in fake.calls).encode()
    done = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids)
    assert done.code == 0, done.stderr
    assert_byte_exact(fake, tmp_path, picked_ids(fake))
    assert "osvi-archiver summary" in done.stderr
    assert f"archived          {len(picked_ids(fake))}" in done.stderr
    assert fake.token not in done.stderr + done.stdout


async def test_csv_file_with_id_column_and_a_bad_row_exits_1(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(4))
    csv = tmp_path / "calls.csv"
    rows = "".join(f"x,{c.call_id}\n" for c in fake.calls)
    csv.write_text(f"name,the_call\n{rows}y,12345\n")
    out = tmp_path / "archive"
    done = await osvi(
        "run", "--out", str(out), "--id-column", "the_call", str(csv), env=env_for(fake)
    )
    assert done.code == 1
    assert re.search(r"invalid row .*calls\.csv line 6", done.stderr), done.stderr
    assert_byte_exact(fake, out, picked_ids(fake))


async def test_missing_token_is_a_usage_error(tmp_path: Path) -> None:
    done = await osvi("run", "--out", str(tmp_path), "-", stdin=b"")
    assert done.code == 2
    assert "OSVI_API_TOKEN" in done.stderr


async def test_bad_flag_value_names_the_flag_and_exits_2(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(1))
    done = await osvi("run", "--concurrency", "0", "-", env=env_for(fake), stdin=b"")
    assert done.code == 2
    assert "--concurrency" in done.stderr


async def test_missing_input_file_exits_2_before_anything_is_attempted(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(1))
    done = await osvi(
        "run", "--out", str(tmp_path / "a"), str(tmp_path / "nope.csv"), env=env_for(fake)
    )
    assert done.code == 2
    assert "nope.csv" in done.stderr
    assert fake.stats.requests == {}


async def test_rejected_token_exits_3_with_a_message(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(30))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    env = env_for(fake, OSVI_API_TOKEN="not-the-token-00")
    done = await osvi("run", "--out", str(tmp_path), env=env, stdin=ids)
    assert done.code == 3
    assert "rejected the token from the environment (OSVI_API_TOKEN)" in done.stderr
    assert "not-the-token-00" not in done.stderr
    # From a token file: the message names the file, where it must be replaced.
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token-00\n")
    token_file.chmod(0o600)
    env = env_for(fake, OSVI_API_TOKEN="", OSVI_API_TOKEN_FILE=str(token_file))
    done = await osvi("run", "--out", str(tmp_path / "b"), env=env, stdin=ids)
    assert done.code == 3
    assert f"the token file {token_file} (OSVI_API_TOKEN_FILE)" in done.stderr
    assert not (tmp_path / "b").exists()  # nothing created for a refused token


async def test_a_second_run_on_a_busy_archive_exits_75(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(2))
    holder = ArchiveLock(tmp_path)
    holder.acquire()
    try:
        done = await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=b"")
    finally:
        holder.release()
    assert done.code == 75
    assert "another osvi-archiver run holds this archive" in done.stderr


async def test_a_readable_config_file_holding_the_token_draws_a_warning(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(2))
    config = tmp_path / "osvi.toml"
    config.write_text(f'api_token = "{fake.token}"\nbase_url = "{fake.base_url}"\n')
    config.chmod(0o644)
    done = await osvi("run", "--config", str(config), "--out", str(tmp_path / "a"), stdin=b"")
    assert done.code == 0, done.stderr
    assert "chmod 600" in done.stderr
    assert fake.token not in done.stderr


async def test_version_and_module_entry_point() -> None:
    done = await osvi("--version")
    assert done.code == 0
    assert re.match(r"osvi-archiver \d+\.\d+\.\d+", done.stdout)


@pytest.mark.timeout(180)  # every fault kind, with real backoff and throttling: up to a minute
async def test_200_calls_against_fake_server_with_faults_archive_byte_exact(
    tmp_path: Path,
) -> None:
    """The issue's acceptance run: `fake-server` process with faults, `run` process, 200 calls."""
    server = await launch(
        "fake-server",
        "--port",
        "0",
        *(
            "--calls",
            "200",
            "--size-max",
            "64KiB",
            "--all-faults",
            "0.15",
            "--retry-after",
            "0",
            "--stall-seconds",
            "2",
        ),
        stdin=asyncio.subprocess.DEVNULL,
        stderr=None,
    )
    try:
        base_url = await _printed_base_url(server)
        config = FakeConfig(calls=200, size_max=64 * 1024)
        local = FakeOSVI(config)  # same seed: the same calls, to know what the bytes must be
        ids = "\n".join(c.call_id for c in local.calls).encode()
        env = {"OSVI_BASE_URL": base_url, "OSVI_API_TOKEN": config.token}
        done = await osvi(
            "run",
            "--out",
            str(tmp_path),
            "--read-timeout",
            "1",
            "--concurrency",
            "16",
            "--max-rps",
            "500",
            "--max-attempts",  # nine fault kinds can each hit a call once: ten attempts suffice
            "10",
            env=env,
            stdin=ids,
            deadline=120,
        )
        assert done.code == 0, done.stderr
        assert_byte_exact(local, tmp_path, picked_ids(local))
        stats = await _stats(base_url)
        assert stats["leaks"] == 0
        assert sum(stats["faults_fired"].values()) > 50
    finally:
        server.terminate()
        await server.wait()


async def _printed_base_url(server: asyncio.subprocess.Process) -> str:
    assert server.stdout is not None
    while True:
        line = (await asyncio.wait_for(server.stdout.readline(), 20)).decode()
        assert line, "fake-server exited before printing its base_url"
        if line.strip().startswith("base_url"):
            return line.split()[-1]


async def _stats(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/_fake/stats") as response:
        body: dict[str, Any] = await response.json()
        return body


async def test_verify_command_reports_damage_with_exit_1_and_json(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    fake = await make_fake(small(8))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    assert (await osvi("run", "--out", str(tmp_path), env=env_for(fake), stdin=ids)).code == 0
    clean = await osvi("verify", "--out", str(tmp_path))
    assert clean.code == 0, clean.stdout + clean.stderr
    victim = next(tmp_path.glob("*.mp4"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    (tmp_path / "stray.txt").write_text("?")
    damaged = await osvi("verify", "--out", str(tmp_path), "--json")
    assert damaged.code == 1
    report = json.loads(damaged.stdout)
    kinds = {p["path"]: p["kind"] for p in report["problems"]}
    assert kinds == {victim.name: "modified", "stray.txt": "unexpected"}


async def test_verify_of_a_folder_without_archive_exits_4(tmp_path: Path) -> None:
    done = await osvi("verify", "--out", str(tmp_path))
    assert done.code == 4
    assert "no osvi-archiver state" in done.stderr


async def test_shards_split_the_input_between_runs(make_fake: FakeFactory, tmp_path: Path) -> None:
    from tests.ids import shard_of

    fake = await make_fake(small(40))
    ids = "\n".join(c.call_id for c in fake.calls).encode()
    outs = [tmp_path / "s0", tmp_path / "s1"]
    env = {**env_for(fake), "JOB_COMPLETION_INDEX": "1"}
    first = await osvi("run", "--out", str(outs[0]), "--shard", "0/2", env=env_for(fake), stdin=ids)
    second = await osvi("run", "--out", str(outs[1]), "--shard", "auto/2", env=env, stdin=ids)
    assert first.code == second.code == 0
    taken = [{p.stem for p in out.glob("*.mp4")} for out in outs]
    assert not taken[0] & taken[1]
    assert taken[0] | taken[1] == {c.call_id for c in fake.calls if c.has_recording}
    assert all(shard_of(cid, 2) == 1 for cid in taken[1])
    assert "other shards" in first.stderr


async def test_every_json_line_of_a_run_names_its_command_shard_and_run(
    make_fake: FakeFactory, tmp_path: Path
) -> None:
    """Eight shards' logs in one journal: each line says which run and shard it is from."""
    fake = await make_fake(FakeConfig(calls=12, faults={FaultKind.RESET: Fault(rate=0.5)}))
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    done = await osvi("-v", "--log-format", "json", "run", "--shard", "1/2", "--out",
                      str(tmp_path), "-", env=env_for(fake), stdin=ids)  # fmt: skip
    assert done.code == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) > 5
    started = next(i for i, line in enumerate(lines) if line["event"] == "run_started")
    run_id = lines[started]["run_id"]
    for line in lines:
        assert line["command"] == "run", line
    for line in lines[started:]:
        assert line["run_id"] == run_id, line
        assert line["shard"] == "1/2", line
