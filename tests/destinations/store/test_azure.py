"""The bucket destination against Azurite (Azure Blob Storage's emulator, from npm): slow,
run by `make test-stores`, which installs it. Skipped when `azurite-blob` or the Azure SDK
(used here only to create the container and read the blobs behind the tool's back) is absent.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver.config.settings import load_settings
from archiver.destinations.store.bucket import StoreDestination
from archiver.destinations.store.client import META_SHA256
from archiver.destinations.store.lease import Lease
from archiver.errors import ArchiveLocked
from archiver.fake import FakeConfig
from archiver.fake.config import Fault, FaultKind
from tests.conftest import FakeFactory
from tests.destinations.store.servers import free_port, wait_listening
from tests.integration.archive_helpers import archive, picked_ids

pytestmark = pytest.mark.slow
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in Microsoft's documentation).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("azurite-blob")
    if binary is None:
        pytest.skip("azurite-blob is not installed (make test-stores installs it)")
    port = free_port()
    folder = tmp_path_factory.mktemp("azurite")
    process = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--skipApiVersionCheck", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
    )  # fmt: skip
    wait_listening(process, port, "azurite-blob")
    yield f"http://127.0.0.1:{port}/{ACCOUNT}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def container(azurite: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    blob = pytest.importorskip("azure.storage.blob")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", KEY)
    service = blob.BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={azurite};"
    )
    return service.create_container(f"c{secrets.token_hex(5)}")


def flags(azurite: str, state_dir: Path) -> dict[str, Any]:
    return {"store_endpoint": azurite, "store_allow_http": True, "state_dir": state_dir}


async def test_a_run_into_azure_blob_storage_keeps_every_promise(
    make_fake: FakeFactory, azurite: str, container: Any, tmp_path: Path
) -> None:
    faults = {FaultKind.RESET: Fault(rate=0.3), FaultKind.REC_503: Fault(rate=0.3)}
    fake = await make_fake(FakeConfig(calls=10, size_min=8 << 10, size_max=12 << 20,
                                      faults=faults))  # fmt: skip
    url = f"az://{container.container_name}/archive"
    state = tmp_path / "state"
    result = await archive(fake, url, **flags(azurite, state))  # type: ignore[arg-type]
    assert result.exit_code == 0, result
    for call_id in picked_ids(fake):
        blob = container.get_blob_client(f"archive/{call_id}.mp4")
        data = blob.download_blob().readall()
        expected = fake.account.expected_sha256(call_id)
        assert hashlib.sha256(data).hexdigest() == expected
        assert blob.get_blob_properties().metadata[META_SHA256] == expected
    names = {b.name for b in container.list_blobs()}
    assert "archive/.osvi-archiver/state.sqlite3" in names
    assert "archive/manifest.json" in names

    downloads = fake.stats.requests["download"]
    shutil.rmtree(state)
    again = await archive(fake, url, **flags(azurite, state))  # type: ignore[arg-type]
    assert again.exit_code == 0
    assert fake.stats.requests["download"] == downloads

    settings = load_settings({"out_dir": url, **flags(azurite, tmp_path / "x")},
                             config_path=None, environ={})  # fmt: skip
    dest = StoreDestination.from_settings(settings)
    holder = Lease(dest.store, ".osvi-archiver/lock", dest.where)
    holder.acquire()
    try:
        with pytest.raises(ArchiveLocked):
            await archive(fake, url, **flags(azurite, state))  # type: ignore[arg-type]
    finally:
        holder.release()
