"""The `osvi-archiver` command line: argv -> options -> the right command -> exit code."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from archiver import __version__
from archiver.fake import options as fake_options

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osvi-archiver",
        description="Keep your own verified copy of every OSVI AI call recording.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "demo",
        help="run the product against the embedded fake OSVI service",
        description="Start the embedded fake OSVI service on loopback and show it working.",
    )
    fake = commands.add_parser(
        "fake-server",
        help="run the embedded fake OSVI service in the foreground",
        description="Run the embedded fake OSVI service (API and recording host) on loopback "
        "until SIGINT or SIGTERM. For trials and for your own tests; never a real OSVI host.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fake_options.add_arguments(fake)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fake-server":
        try:
            fake_options.config_from_args(args)
        except ValueError as exc:
            print(f"osvi-archiver fake-server: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        asyncio.run(fake_options.serve_until_signalled(args))
        return 0
    from archiver.fake.tour import tour

    asyncio.run(tour())
    return 0
