"""The ETag check of a download (§5.2), at the HTTP edge with aioresponses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import pytest
from aioresponses import aioresponses

from archiver.archive.storage import PartFile
from archiver.errors import ChecksumMismatch
from archiver.transfer.body_checks import Downloaded, DownloadPolicy
from archiver.transfer.download import Downloader, Transfer

URL = "https://rec.example/a.mp4?X-Amz-Signature=abc"
BODY = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 64


async def fetched(tmp_path: Path, etag: str | None) -> tuple[Transfer, Path]:
    async def destination(ext: str) -> tuple[Path, Path]:
        final = tmp_path / f"call{ext}"
        return final, final.with_name(final.name + ".part")

    headers = {"Content-Type": "audio/mp4", **({"ETag": etag} if etag else {})}
    async with aiohttp.ClientSession() as session:
        with aioresponses() as mocked:
            mocked.get(URL, body=BODY, headers=headers)
            transfer = Downloader(session, DownloadPolicy(), lambda: 0.0).transfer(destination)
            await transfer.fetch(URL)
    return transfer, tmp_path / "call.mp4"


async def test_a_body_whose_md5_differs_from_a_plain_md5_etag_is_refused(tmp_path: Path) -> None:
    transfer, _ = await fetched(tmp_path, '"' + hashlib.md5(b"other").hexdigest() + '"')
    with pytest.raises(ChecksumMismatch):
        transfer.verify()
    await transfer.discard()


async def test_a_body_matching_its_md5_etag_is_committed(tmp_path: Path) -> None:
    transfer, final = await fetched(tmp_path, '"' + hashlib.md5(BODY).hexdigest() + '"')
    transfer.verify()
    published: list[Path] = []

    async def publish(part: PartFile, done: Downloaded) -> None:
        published.append(done.path)
        await part.commit(done.path)

    done = await transfer.commit(publish)
    assert published == [final]
    assert final.read_bytes() == BODY
    assert done.sha256 == hashlib.sha256(BODY).hexdigest()


@pytest.mark.parametrize("etag", [None, '"' + "0" * 32 + '-2"'])
async def test_without_a_plain_md5_etag_no_md5_is_computed(
    tmp_path: Path, etag: str | None
) -> None:
    transfer, _ = await fetched(tmp_path, etag)
    transfer.verify()
    assert transfer._digests.md5 is None  # no hash that could never be checked
    await transfer.discard()
