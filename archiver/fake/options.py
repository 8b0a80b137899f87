"""Command-line options of `osvi-archiver fake-server`, and running it in the foreground."""

from __future__ import annotations

import argparse
import signal

from archiver.config import units as values
from archiver.fake.config import (
    CALL_PROPERTIES,
    HOSTILE,
    LIST_META_MODES,
    FakeConfig,
    Fault,
    FaultKind,
    parse_fault,
)


def parse_size(text: str) -> int:
    """Bytes from `4096`, `64KiB`, `16M`, `1GiB` (values.parse_size, as the tool reads them)."""
    try:
        return values.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (e.g. 4096, 256KiB, 16MiB)"
        ) from exc


def _fault(text: str) -> tuple[FaultKind, Fault]:
    try:
        return parse_fault(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = FakeConfig()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on")
    add("--port", type=int, default=0, help="API port (0: any free port)")
    add("--recording-port", type=int, default=0, help="recording host port (0: any free port)")
    add("--calls", type=int, default=d.calls, help="calls on the account")
    add(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the generated calls",
    )
    add("--token", default=d.token, help="the API token it accepts")
    add("--days", type=float, default=d.days, help="calls spread over this many days before now")
    add(
        "--size-min",
        type=parse_size,
        default=d.size_min,
        help="smallest recording, bytes or 64KiB/16MiB",
    )
    add(
        "--size-max",
        type=parse_size,
        default=d.size_max,
        help="largest recording, bytes or 64KiB/16MiB",
    )
    add("--api-latency", type=float, default=0.0, help="seconds before each API answer")
    add("--download-latency", type=float, default=0.0, help="seconds before recording headers")
    add(
        "--bandwidth",
        type=parse_size,
        default=None,
        metavar="RATE",
        help="bytes/s per download stream, 1MiB say (default: as fast as loopback goes)",
    )
    add("--url-lifetime", type=int, default=d.url_lifetime, help="presigned URL lifetime, seconds")
    add("--retry-after", default=d.retry_after, help="Retry-After of 429/503: seconds or HTTP-date")
    add("--stall-seconds", type=float, default=d.stall_seconds, help="length of a stall fault")
    add(
        "--pending-requests",
        type=int,
        default=d.pending_requests,
        help="asks before a pending call's recording appears",
    )
    add(
        "--api-rate-limit",
        type=float,
        default=None,
        metavar="RPS",
        help="answer 429 (Retry-After: 1) to API requests above RPS in any second",
    )
    add("--ignore-range", action="store_true", help="answer 200 with the whole body to Range")
    add("--no-content-type", action="store_true", help="send recordings without Content-Type")
    add("--multipart-etag", action="store_true", help="send multipart ETags (not an MD5)")
    add(
        "--trickle-rate",
        type=float,
        default=d.trickle_rate,
        metavar="BYTES_PER_S",
        help="speed of a trickle fault's body",
    )
    add(
        "--huge-body",
        type=parse_size,
        default=d.huge_body,
        help="size of an api-huge fault's answer",
    )
    add(
        "--detail-padding",
        type=parse_size,
        default=d.detail_padding,
        help="bytes of padding (a list of transcript-like turns) in every call detail",
    )
    add(
        "--list-meta",
        choices=LIST_META_MODES,
        default=d.list_meta,
        help="the listing's meta: honest, null, absent, page-count (the page's own count) or "
        "inflated (a thousand times the calls)",
    )
    add("--list-ignore-page", action="store_true", help="the listing answers page 1 to any page")
    add(
        "--list-repeat-pages",
        type=int,
        default=d.list_repeat_pages,
        metavar="N",
        help="the next N answers to a page >= 2 repeat the page before it",
    )
    add("--naive-dates", action="store_true", help="show times without their UTC offset (IST)")
    add(
        "--time-shift",
        type=float,
        default=d.time_shift,
        metavar="SECONDS",
        help="add SECONDS to the times shown (a clock running ahead: times in the future)",
    )
    kinds = ", ".join(k.value for k in FaultKind)
    add(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND=RATE[:TIMES]",
        help=f"inject a fault into RATE (0..1) of the calls, TIMES per call (default 1, or "
        f"'always'); repeatable. Kinds: {kinds}",
    )
    add(
        "--all-faults",
        type=float,
        default=0.0,
        metavar="RATE",
        help="every request fault (not not-available/pending, nor the hostile ones: trickle, "
        "endless, gzip, api-echo, api-huge) at RATE, once per call",
    )


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    faults: dict[FaultKind, Fault] = {}
    if args.all_faults:
        skipped = CALL_PROPERTIES | HOSTILE
        faults = {k: Fault(rate=args.all_faults) for k in FaultKind if k not in skipped}
    faults.update(dict(args.fault))
    return FakeConfig(
        calls=args.calls,
        seed=args.seed,
        token=args.token,
        days=args.days,
        size_min=args.size_min,
        size_max=args.size_max,
        api_latency=args.api_latency,
        download_latency=args.download_latency,
        bandwidth=args.bandwidth,
        url_lifetime=args.url_lifetime,
        retry_after=args.retry_after,
        stall_seconds=args.stall_seconds,
        pending_requests=args.pending_requests,
        api_rate_limit=args.api_rate_limit,
        ignore_range=args.ignore_range,
        content_type=None if args.no_content_type else "audio/mp4",
        multipart_etag=args.multipart_etag,
        trickle_rate=args.trickle_rate,
        huge_body=args.huge_body,
        detail_padding=args.detail_padding,
        list_meta=args.list_meta,
        list_ignore_page=args.list_ignore_page,
        list_repeat_pages=args.list_repeat_pages,
        naive_dates=args.naive_dates,
        time_shift=args.time_shift,
        faults=faults,
    )


async def serve_until_signalled(args: argparse.Namespace) -> None:
    """Start the fake, print how to reach it, and run until SIGINT or SIGTERM."""
    import asyncio  # for the server only: the parser is built without it

    from archiver.fake.server import FakeOSVI  # the web side: only when served

    fake = FakeOSVI(
        config_from_args(args),
        host=args.host,
        api_port=args.port,
        recording_port=args.recording_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with fake:
        print(f"fake OSVI service: {len(fake.calls)} calls (seed {fake.config.seed})")
        print(f"  base_url        {fake.base_url}")
        print(f"  token           {fake.token}")
        print(f"  recording host  {fake.recording_origin}")
        print(f"  counters        {fake.base_url}/_fake/stats")
        print(f"try: OSVI_BASE_URL={fake.base_url} OSVI_API_TOKEN={fake.token} osvi-archiver ...")
        print("stop with Ctrl-C", flush=True)
        await stop.wait()
    print("fake OSVI service stopped", flush=True)
