"""The floor reference of the large-file rows (issue 23): the same job as the tool with every
guarantee it keeps, and nothing else. `python -m bench.floor IDS OUT CONCURRENCY`, with
OSVI_BASE_URL and OSVI_API_TOKEN as the tool takes them.

Per call: a fresh URL from the API, then the body over plain http.client (no aiohttp, no
asyncio) read into reused 1 MiB buffers; a writer thread writes each buffer and updates the
SHA-256, an MD5 thread updates the MD5 (a plain-MD5 ETag is checked); fsync, rename, fsync the
folder. What the tool adds above this (its event loop, aiohttp's receive path, the state's
commits, retries, the manifest) is what the rows measure.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import queue
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

BUFFER = 1 << 20
BUFFERS = 8  # per download: the bound of its queue, as the tool's lanes


def _get(url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", target, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{url.split('?')[0]}: {response.status}")
    return response


def _recording_url(base: str, token: str, call_id: str) -> str:
    with _get(f"{base}/v1/call/{call_id}/recording", {"API-Token": token}) as answer:
        return str(json.load(answer)["data"]["recording_url"])


def fetch(base: str, token: str, call_id: str, out: Path) -> None:
    response = _get(_recording_url(base, token, call_id), {"Accept-Encoding": "identity"})
    etag = (response.getheader("ETag") or "").strip('"')
    part = out / f"{call_id}.mp4.part"
    handle = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with response:
        sha256, md5 = _receive(response, handle)
    if etag and len(etag) == 32 and md5.hexdigest() != etag.lower():
        raise RuntimeError(f"{call_id}: MD5 differs from its ETag")
    os.fsync(handle)
    os.close(handle)
    part.rename(out / f"{call_id}.mp4")
    folder = os.open(out, os.O_RDONLY)
    os.fsync(folder)
    os.close(folder)
    (out / f"{call_id}.sha256").write_text(sha256.hexdigest())


def _receive(response: http.client.HTTPResponse, handle: int) -> tuple[Any, Any]:
    """The body into reused buffers; a writer thread writes and SHA-256s each, an MD5 thread
    follows it and frees the buffer."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(bytearray(BUFFER))
    written: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
    hashed: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()

    def writer() -> None:
        while (item := written.get()) is not None:
            view = memoryview(item[0])[: item[1]]
            sha256.update(view)
            while view:  # a raw write may write part of it
                view = view[os.write(handle, view) :]
            hashed.put(item)
        hashed.put(None)

    def md5_lane() -> None:
        while (item := hashed.get()) is not None:
            md5.update(memoryview(item[0])[: item[1]])
            free.put(item[0])

    lanes = [threading.Thread(target=writer), threading.Thread(target=md5_lane)]
    for lane in lanes:
        lane.start()
    while size := _fill(response, buffer := free.get()):
        written.put((buffer, size))
    written.put(None)
    for lane in lanes:
        lane.join()
    return sha256, md5


def _fill(response: http.client.HTTPResponse, buffer: bytearray) -> int:
    """The buffer filled (one read gives what one recv had: a batch per MiB, not per recv)."""
    view, filled = memoryview(buffer), 0
    while filled < len(buffer) and (got := response.readinto(view[filled:])):
        filled += got
    return filled


def main(argv: list[str]) -> int:
    ids_file, out, concurrency = Path(argv[0]), Path(argv[1]), int(argv[2])
    base, token = os.environ["OSVI_BASE_URL"].rstrip("/"), os.environ["OSVI_API_TOKEN"]
    out.mkdir(parents=True, exist_ok=True)
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(fetch, base, token, call_id, out) for call_id in ids]:
            future.result()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
