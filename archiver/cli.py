"""The `osvi-archiver` command line: argv -> settings -> the command -> exit code. No logic.

Flags default to "not given" (argparse.SUPPRESS), so only what the user typed reaches the
settings as the highest-precedence source, above env, the config file and defaults (§3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from archiver import __version__
from archiver.errors import ArchiverError, UsageError
from archiver.fake import options as fake_options
from archiver.inputs import InputItem, check_sources, read_sources
from archiver.logs import setup_logging
from archiver.progress import LiveBar, NoProgress, Progress, StatusLines
from archiver.settings import Settings, choose_config_file, config_file_warnings, load_settings

EXIT_USAGE = 2
log = logging.getLogger("archiver.cli")
_D = Settings.model_fields


def _default(name: str) -> str:
    return f"(default: {_D[name].default})"


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options accepted both before and after the subcommand."""
    s = argparse.SUPPRESS
    parser.add_argument(
        "--config",
        default=s,
        metavar="PATH",
        help="TOML config file (default: $OSVI_CONFIG, else none)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="DEBUG",
        default=s,
        help="show every retry and more",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const="ERROR",
        default=s,
        help="show errors only",
    )


def _add_run_options(run: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    add = run.add_argument
    add(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="CSV (column call_id, else id, else --id-column) or plain-text files of call ids; "
        "'-' or nothing reads stdin",
    )
    add("--base-url", dest="base_url", default=s, help=f"OSVI API origin {_default('base_url')}")
    add("--out", dest="out_dir", default=s, help=f"archive folder {_default('out_dir')}")
    add("--concurrency", type=int, default=s, help=f"calls in flight {_default('concurrency')}")
    add(
        "--max-rps",
        dest="max_requests_per_second",
        type=float,
        default=s,
        help=f"API requests per second, not downloads {_default('max_requests_per_second')}",
    )
    add(
        "--max-attempts",
        dest="max_attempts",
        type=int,
        default=s,
        help=f"attempts per call {_default('max_attempts')}",
    )
    add(
        "--connect-timeout",
        dest="connect_timeout",
        default=s,
        help="seconds or 10s/2m (default: 10s)",
    )
    add(
        "--read-timeout",
        dest="read_timeout",
        default=s,
        help="longest silence while receiving (default: 60s)",
    )
    add("--layout", default=s, help=f"path of each recording in the archive {_default('layout')}")
    add(
        "--pending-window",
        dest="pending_window",
        default=s,
        help="a 404 for a call younger than this is 'pending', tried again by later runs "
        "(default: 48h)",
    )
    add("--file-mode", dest="file_mode", default=s, help="mode of archived files (default: 0o600)")
    add(
        "--allow-insecure-urls",
        dest="allow_insecure_urls",
        action="store_const",
        const=True,
        default=s,
        help="accept plain-http recording URLs to non-loopback hosts (default: no)",
    )
    add(
        "--progress",
        choices=("auto", "always", "never"),
        default=s,
        help="live display: auto = on a terminal only (default: auto)",
    )
    add(
        "--keep-run-reports",
        dest="keep_run_reports",
        type=int,
        default=s,
        help=f"run reports kept in runs/ {_default('keep_run_reports')}",
    )
    add("--force", action="store_true", help="download again calls already archived")
    add(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="take no input: retry only the calls this archive lists as failed or pending",
    )
    add("--id-column", dest="id_column", default=None, help="CSV column holding the call id")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osvi-archiver",
        description="Keep your own verified copy of every OSVI AI call recording. The API "
        "token comes from OSVI_API_TOKEN or api_token in the config file, never a flag.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="archive the calls named in CSV/text files or on stdin",
        description="Archive the recordings of the calls named in INPUT files or on stdin. "
        "Exit codes: 0 all done (archived, already archived, pending or not available), "
        "1 some calls failed or rows were invalid, 2 usage error, 3 token rejected, "
        "4 local error (disk, permissions, state), 75 archive busy.",
    )
    _add_common(run)
    _add_run_options(run)
    verify = commands.add_parser(
        "verify",
        help="re-hash every archived file against the archive's record",
        description="Re-read every archived recording and check its size and sha256 against the "
        "archive's state (what manifest.json is rendered from); list missing, truncated, "
        "modified and unexpected files. Exit 0 if all is well, 1 if anything is wrong, "
        "4 if the archive's state cannot be read. Takes no lock and writes nothing.",
    )
    _add_common(verify)
    verify.add_argument(
        "--out",
        dest="out_dir",
        default=argparse.SUPPRESS,
        help=f"archive folder {_default('out_dir')}",
    )
    verify.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    demo = commands.add_parser(
        "demo",
        help="run the whole product against the embedded fake OSVI service",
        description="Start the embedded fake OSVI service on loopback (faults on) and archive "
        "its calls into ./demo-archive. No account needed.",
    )
    _add_common(demo)
    fake = commands.add_parser(
        "fake-server",
        help="run the embedded fake OSVI service in the foreground",
        description="Run the embedded fake OSVI service (API and recording host) on loopback "
        "until SIGINT or SIGTERM. For trials and for your own tests; never a real OSVI host.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fake_options.add_arguments(fake)
    return parser


_NOT_SETTINGS = {"command", "config", "inputs", "force", "id_column", "retry_failed", "json"}


def _settings(args: argparse.Namespace) -> Settings:
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS}
    config = getattr(args, "config", None)
    settings = load_settings(flags, config_path=config, environ=os.environ)
    chosen = choose_config_file(config, os.environ)
    for warning in config_file_warnings(chosen) if chosen else []:
        log.warning("%s", warning)
    return settings


# Settings declared in §3 whose behaviour this version does not have yet: refuse them clearly
# rather than silently ignore them.
_NOT_YET = {
    "with_metadata": False,
    "with_transcript": False,
    "metrics_file": None,
    "log_format": "text",
}


def _refuse_unsupported(settings: Settings) -> None:
    for name, default in _NOT_YET.items():
        if getattr(settings, name) != default:
            raise UsageError(f"{name} is not supported by osvi-archiver {__version__} yet")


def _progress(settings: Settings) -> Progress:
    if settings.progress == "always" or (settings.progress == "auto" and sys.stderr.isatty()):
        return LiveBar(None)
    if settings.progress == "never":
        return NoProgress()
    return StatusLines()


def _run(args: argparse.Namespace) -> int:
    from archiver.run import RunOptions, execute
    from archiver.summary import render

    if args.retry_failed and args.inputs:
        raise UsageError("--retry-failed takes its calls from the archive: give no INPUT")
    settings = _settings(args)
    _refuse_unsupported(settings)
    setup_logging(settings.log_level, [settings.token_value() or ""])
    options = RunOptions(force=args.force, retry_failed=args.retry_failed)
    items = iter(()) if args.retry_failed else _inputs(args)
    result = asyncio.run(execute(settings, items, _progress(settings), options))
    print(
        render(result.counts, result.seconds, result.manifest, result.report, result.error),
        file=sys.stderr,
    )
    return result.exit_code


def _verify(args: argparse.Namespace) -> int:
    from archiver.verify import render_text, report_json, verify_archive

    settings = _settings(args)
    setup_logging(settings.log_level, [settings.token_value() or ""])
    report = verify_archive(settings.out_dir)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(render_text(report, settings.out_dir))
    return 0 if report.ok else 1


def _inputs(args: argparse.Namespace) -> Iterator[InputItem]:
    paths = list(args.inputs) or ["-"]
    if paths == ["-"] and sys.stdin.isatty():
        raise UsageError("no input: name CSV or text files of call ids, or pipe them on stdin")
    check_sources(paths, args.id_column)
    return read_sources(paths, sys.stdin.buffer, args.id_column)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "fake-server":
        try:
            fake_options.config_from_args(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        asyncio.run(fake_options.serve_until_signalled(args))
        return 0
    if args.command == "verify":
        return _verify(args)
    if args.command == "demo":
        from archiver.demo import run_demo

        setup_logging(getattr(args, "log_level", "WARNING"), [])
        return asyncio.run(run_demo())
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ArchiverError as exc:
        print(f"osvi-archiver: error: {exc}", file=sys.stderr)
        return exc.exit_code
