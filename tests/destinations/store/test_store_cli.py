"""`osvi-archiver` with `--out s3://...` as a user runs it (a real process, its environment
holding the store's credentials): signals, secrets, verify, the manifest, dry runs."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from archiver.fake import FakeConfig, FakeOSVI
from archiver.fake.config import Fault, FaultKind
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import ACCESS_KEY, S3, SECRET_KEY
from tests.integration.archive_helpers import picked_ids
from tests.integration.cli_helpers import env_for, finish, osvi, start_osvi

PREFIX = "archive"


def ids_csv(fake: FakeOSVI) -> bytes:
    return ("call_id\n" + "".join(f"{c.call_id}\n" for c in fake.calls)).encode()


def cli_env(fake: FakeOSVI, s3: S3, state_dir: Path, **more: str) -> dict[str, str]:
    return env_for(fake, OSVI_STATE_DIR=str(state_dir), OSVI_MAX_REQUESTS_PER_SECOND="500",
                   **s3.env(), **more)  # fmt: skip


async def test_store_credentials_appear_in_no_output(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    """Debug logs as JSON, the summary, the run report, the manifest, the metrics: none
    holds the access key or the secret key; the store's client alone sends them."""
    fake = await make_fake(FakeConfig(calls=6, size_min=8192, size_max=32768,
                                      faults={FaultKind.RESET: Fault(rate=0.5)}))  # fmt: skip
    metrics = tmp_path / "osvi.prom"
    env = cli_env(fake, s3, tmp_path / "state", OSVI_METRICS_FILE=str(metrics))
    done = await osvi("-v", "--log-format", "json", "run", "--out", s3.url(PREFIX), "-",
                      env=env, stdin=ids_csv(fake))  # fmt: skip
    assert done.code == 0, done.stderr
    outputs = [done.stdout, done.stderr, metrics.read_text()]
    outputs += [s3.body(k).decode() for k in s3.keys(PREFIX) if k.endswith(".json")]
    outputs += [p.read_bytes().decode("latin-1") for p in (tmp_path / "state").rglob("*")
                if p.is_file()]  # fmt: skip
    for text in outputs:
        assert ACCESS_KEY not in text
        assert SECRET_KEY not in text
    # Nor does the recording host ever see a credential of any kind.
    assert fake.stats.leaks == []


async def test_sigterm_mid_run_leaves_no_partial_object_and_no_open_upload(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    # Slow downloads of recordings over one part: SIGTERM finds calls downloading and
    # uploading; each is finished whole, or cancelled and aborted.
    fake = await make_fake(FakeConfig(calls=8, size_min=9 << 20, size_max=10 << 20,
                                      bandwidth=12 << 20))  # fmt: skip
    env = cli_env(fake, s3, tmp_path / "state")
    process = await start_osvi("run", "--out", s3.url(PREFIX), "--concurrency", "4", "-",
                               env=env, stdin=ids_csv(fake))  # fmt: skip
    for _ in range(400):
        await asyncio.sleep(0.05)
        if fake.stats.requests["download"] >= 5:
            break
    await asyncio.sleep(0.6)
    process.send_signal(signal.SIGTERM)
    done = await finish(process)
    assert done.code == 143, done.stderr
    assert s3.uploads() == []
    for key in s3.keys(PREFIX):
        if key.endswith(".mp4"):
            call_id = key.rsplit("/", 1)[-1].removesuffix(".mp4")
            import hashlib

            digest = hashlib.sha256(s3.body(key)).hexdigest()
            assert digest == fake.account.expected_sha256(call_id)
    assert list((tmp_path / "state").rglob("*.part")) == []
    report = json.loads(s3.body(next(k for k in s3.keys(f"{PREFIX}/runs/"))))
    assert report["exit_code"] == 143
    # A rerun continues: every call archived at the end, none downloaded twice in full.
    again = await osvi("run", "--out", s3.url(PREFIX), "-", env=env, stdin=ids_csv(fake),
                       deadline=120)  # fmt: skip
    assert again.code == 0, again.stderr
    mp4 = [k for k in s3.keys(PREFIX) if k.endswith(".mp4")]
    assert len(mp4) == len(picked_ids(fake))


async def test_verify_finds_a_missing_and_a_corrupted_object(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=6, size_min=8192, size_max=32768))
    env = cli_env(fake, s3, tmp_path / "state")
    done = await osvi("run", "--out", s3.url(PREFIX), "-", env=env, stdin=ids_csv(fake))
    assert done.code == 0, done.stderr
    verify = ("verify", "--json", "--out", s3.url(PREFIX))
    fresh = cli_env(fake, s3, tmp_path / "elsewhere")  # no local state: the snapshot's
    clean = await osvi(*verify, "--deep", env=fresh)
    assert clean.code == 0, clean.stderr
    assert json.loads(clean.stdout)["checked"] == len(picked_ids(fake))

    gone, swapped, rotten, *_ = picked_ids(fake)
    s3.delete(f"{PREFIX}/{gone}.mp4")
    s3.client.put_object(Bucket=s3.bucket, Key=f"{PREFIX}/{swapped}.mp4", Body=b"x" * 10)
    # Same size, the tool's metadata copied: only --deep's hash sees it.
    key = f"{PREFIX}/{rotten}.mp4"
    body, meta = bytearray(s3.body(key)), s3.metadata(key)
    body[-1] ^= 0xFF
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(body), Metadata=meta)
    s3.client.put_object(Bucket=s3.bucket, Key=f"{PREFIX}/stray.mp4", Body=b"?")

    shallow = await osvi(*verify, env=fresh)
    assert shallow.code == 1
    found = {(p["kind"], p["path"]) for p in json.loads(shallow.stdout)["problems"]}
    assert found == {("missing", f"{gone}.mp4"), ("truncated", f"{swapped}.mp4"),
                     ("unexpected", "stray.mp4")}  # fmt: skip
    deep = await osvi(*verify, "--deep", env=fresh)
    found = {(p["kind"], p["path"]) for p in json.loads(deep.stdout)["problems"]}
    assert ("modified", f"{rotten}.mp4") in found
    text = await osvi("verify", "--out", s3.url(PREFIX), env=fresh)
    assert "PROBLEMS FOUND" in text.stdout
    assert s3.url(PREFIX) in text.stdout


async def test_manifest_and_dry_run_read_the_bucket(
    make_fake: FakeFactory, s3: S3, tmp_path: Path
) -> None:
    fake = await make_fake(FakeConfig(calls=5, size_min=8192, size_max=16384))
    env = cli_env(fake, s3, tmp_path / "state")
    assert (await osvi("run", "--out", s3.url(PREFIX), "-", env=env, stdin=ids_csv(fake))).code == 0
    elsewhere = cli_env(fake, s3, tmp_path / "elsewhere")
    listed = await osvi("manifest", "--format", "jsonl", "--out", s3.url(PREFIX), env=elsewhere)
    assert listed.code == 0, listed.stderr
    calls = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {c["call_id"] for c in calls} == {c.call_id for c in fake.calls}
    dry = await osvi("run", "--dry-run", "--out", s3.url(PREFIX), "-", env=elsewhere,
                     stdin=ids_csv(fake))  # fmt: skip
    assert dry.code == 0, dry.stderr
    skips = [line for line in dry.stdout.splitlines() if line.startswith("skip")]
    settled = [c for c in calls if c["status"] in ("archived", "not_available")]  # both final
    assert len(skips) == len(settled) >= len(picked_ids(fake))
    assert not (tmp_path / "elsewhere").exists()  # a look writes no local state


async def test_a_bad_store_url_is_a_usage_error(tmp_path: Path) -> None:
    for url, said in (
        ("s3://key:secret@bucket/x", "credentials come from the store's environment"),
        ("s3://UPPER/x", "is not a bucket name"),
        ("ftp://bucket/x", "unknown scheme"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/a/%2e%2E", "'%'"),  # the store's client would decode it into '..'
        ("s3:/bucket/x", "missing its '://'"),
        ("s3//bucket/x", "missing its '://'"),
    ):
        done = await osvi("run", "--out", url, "-", env={"OSVI_API_TOKEN": "t" * 16},
                          stdin=b"")  # fmt: skip
        assert done.code == 2, (url, done.stderr)
        assert said in done.stderr
        assert "key:secret" not in done.stderr


async def test_a_plain_http_endpoint_needs_its_switch(tmp_path: Path) -> None:
    done = await osvi("run", "--out", "s3://bucket/x", "--store-endpoint", "http://10.0.0.9:9000",
                      "--state-dir", str(tmp_path), "-",
                      env={"OSVI_API_TOKEN": "t" * 16}, stdin=b"")  # fmt: skip
    assert done.code == 2, done.stderr
    assert "--store-allow-http" in done.stderr
