"""The `osvi-archiver` command line: argv -> settings -> the command -> exit code. No logic.

Flags default to "not given" (argparse.SUPPRESS), so only what the user typed reaches the
settings as the highest-precedence source, above env, the config file and defaults (§3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from archiver import layout as layouts
from archiver.counts import NoProgress, Progress
from archiver.errors import InternalError, RunError, UsageError
from archiver.fake import options as fake_options
from archiver.inputs import InputItem, canonical_uuid, check_sources, count_ids, read_sources
from archiver.listing import CALL_STATUSES, Filters
from archiver.logs import forget_format, json_mode, setup_logging
from archiver.options import NOT_SETTINGS, build_parser
from archiver.progress import choose_progress
from archiver.redaction import scrub
from archiver.settings import (
    Settings,
    choose_config_file,
    config_file_warnings,
    load_settings,
    require_token,
)
from archiver.shard import resolve_shard
from archiver.times import parse_moment

if TYPE_CHECKING:
    from archiver.outputs import RunResult
    from archiver.state import State

EXIT_USAGE = 2
log = logging.getLogger("archiver.cli")


def _settings(args: argparse.Namespace) -> Settings:
    flags = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    config = getattr(args, "config", None)
    settings = load_settings(flags, config_path=config, environ=os.environ)
    # From here on, errors and warnings go out in the format asked for, redacted.
    setup_logging(settings.log_level, [settings.token_value() or ""], settings.log_format)
    chosen = choose_config_file(config, os.environ)
    for warning in config_file_warnings(chosen) if chosen else []:
        log.warning("%s", warning, extra={"event": "config_warning"})
    return settings


def _check_metrics_file(settings: Settings) -> None:
    """Before anything is attempted: a metrics file that cannot be written at the end would
    leave monitoring with stale figures."""
    path = settings.metrics_file
    if path is None:
        return
    if not path.parent.is_dir():
        raise UsageError(f"metrics_file {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise UsageError(f"metrics_file {path} is a folder: name the file to write")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"metrics_file {path}: the folder {path.parent} is not writable")


def _summary(result: RunResult) -> None:
    """§6's summary block on stderr; with JSON logs, the same as one `run_finished` event, so
    stderr stays JSON Lines."""
    from archiver.summary import render

    if not json_mode():
        text = render(result.counts, result.seconds, result.manifest, result.report, result.error)
        # A stderr that went away (`2>&1 | head`) must not change the exit code: the run
        # report and the metrics already say it.
        with contextlib.suppress(OSError):
            print(text, file=sys.stderr)
        return
    log.info(
        "run %s finished with exit code %d",
        result.run_id,
        result.exit_code,
        extra={
            "event": "run_finished",
            "run_id": result.run_id,
            "exit_code": result.exit_code,
            "seconds": round(result.seconds, 3),
            "counts": result.counts.to_json(),
            "error": str(result.error) if result.error else None,
            "manifest": str(result.manifest) if result.manifest else None,
            "report": str(result.report) if result.report else None,
        },
    )


def _progress(settings: Settings) -> Progress:
    return choose_progress(
        settings.progress,
        on_terminal=sys.stderr.isatty() and settings.log_format == "text",
        interval=settings.status_interval,
    )


def _run(args: argparse.Namespace) -> int:
    from archiver.run import RunOptions, execute

    if args.retry_failed and args.inputs:
        raise UsageError("--retry-failed takes its calls from the archive: give no INPUT")
    settings = _settings(args)
    _check_metrics_file(settings)
    if layouts.needs_listing_fields(settings.layout) and not settings.with_metadata:
        raise UsageError(
            f"layout {settings.layout!r} needs the call's date or agent: `run` knows them only "
            "with --with-metadata (or use `sync`, whose listing provides them)"
        )
    items = iter(()) if args.retry_failed else _inputs(args)
    if args.dry_run:
        return _dry_run_input(args, settings, items)
    progress = _progress(settings)
    # The total only serves a display: no extra read of the input when nobody watches.
    counted = not args.retry_failed and not isinstance(progress, NoProgress)
    total = count_ids(list(args.inputs) or ["-"]) if counted else None
    options = RunOptions(
        force=args.force, retry_failed=args.retry_failed, shard=_shard(args.shard), total=total
    )
    result = asyncio.run(execute(settings, items, progress, options))
    _summary(result)
    return result.exit_code


def _shard(text: str | None) -> tuple[int, int] | None:
    return resolve_shard(text, os.environ) if text else None


def _filters(args: argparse.Namespace, default_status: tuple[str, ...]) -> Filters:
    statuses = tuple(s.strip() for v in args.status or () for s in v.split(",") if s.strip())
    unknown = set(statuses) - set(CALL_STATUSES)
    if unknown:
        raise UsageError(
            f"--status {', '.join(sorted(unknown))}: not one of {', '.join(CALL_STATUSES)}"
        )
    if args.agent is not None and canonical_uuid(args.agent) is None:
        raise UsageError(f"--agent {args.agent!r} is not a UUID")
    return Filters(
        status=statuses or default_status,
        agent_uuid=canonical_uuid(args.agent) if args.agent else None,
        campaign_id=args.campaign,
        campaign_upload_id=args.campaign_upload,
        phone_number=args.phone,
        call_type=args.call_type,
    )


def _window(args: argparse.Namespace) -> tuple[datetime | None, datetime | None, datetime]:
    now = datetime.now(UTC)
    since = parse_moment(args.since, now, end=False, flag="--since") if args.since else None
    until = parse_moment(args.until, now, end=True, flag="--until") if args.until else None
    return since, until, now


def _sync(args: argparse.Namespace) -> int:
    from archiver.run import RunOptions, execute
    from archiver.sync import make_source

    settings = _settings(args)
    _check_metrics_file(settings)
    filters = _filters(args, ("picked",))
    since, until, now = _window(args)
    shard = _shard(args.shard)
    if since is None and not _has_watermark(settings.out_dir, shard):
        whose = f" for shard {shard[0]}/{shard[1]}" if shard else ""
        raise UsageError(
            f"{settings.out_dir} has no sync watermark{whose} yet: pass --since for the first "
            "sync (e.g. --since 7d or --since 2026-06-01)"
        )
    if args.dry_run:
        return _dry_run_sync(args, settings, (since, until, now), filters, shard)
    source = make_source(since, until, now, settings.sync_overlap, filters, settings.max_attempts)
    options = RunOptions(force=args.force, shard=shard, command="sync")
    result = asyncio.run(execute(settings, source, _progress(settings), options))
    _summary(result)
    return result.exit_code


def _dry_run_input(args: argparse.Namespace, settings: Settings, items: Iterator[InputItem]) -> int:
    """`run --dry-run`: the state read-only, the input read; no token needed, nothing asked."""
    from archiver.decide import taken_first
    from archiver.dryrun import DryRun
    from archiver.run import warn_other_sharding
    from archiver.state import existing_state

    shard = _shard(args.shard)
    warn_other_sharding(settings.out_dir, shard)
    with existing_state(settings.out_dir, shard) as state:
        dry = DryRun(state, settings.out_dir, sys.stdout, force=args.force, shard=shard)
        dry.items(taken_first(state, "run", retry_failed=args.retry_failed))
        dry.items(items)
    print(dry.counts.render(), file=sys.stderr)
    return dry.counts.exit_code


def _dry_run_sync(
    args: argparse.Namespace,
    settings: Settings,
    window: tuple[datetime | None, datetime | None, datetime],
    filters: Filters,
    shard: tuple[int, int] | None,
) -> int:
    """`sync --dry-run`: lists calls through the API (no recording URL), state read-only."""
    from archiver.decide import taken_first
    from archiver.dryrun import DryRun
    from archiver.listing import RetriedListing
    from archiver.run import open_api, warn_other_sharding
    from archiver.state import existing_state
    from archiver.sync import listed_ids, plan, read_watermark

    require_token(settings)  # before a line is printed: the listing needs it
    warn_other_sharding(settings.out_dir, shard)

    async def go(dry: DryRun, state: State | None) -> None:
        mark = read_watermark(state) if state else None
        sync = plan(mark, *window, settings.sync_overlap, filters)
        async with open_api(settings) as api:
            await dry.listed(listed_ids(RetriedListing(api, settings.max_attempts), sync))

    with existing_state(settings.out_dir, shard) as state:
        dry = DryRun(state, settings.out_dir, sys.stdout, force=args.force, shard=shard)
        dry.items(taken_first(state, "sync"))
        asyncio.run(go(dry, state))
    print(dry.counts.render(), file=sys.stderr)
    return dry.counts.exit_code


def _has_watermark(out_dir: Path, shard: tuple[int, int] | None) -> bool:
    from archiver.state import existing_state
    from archiver.sync import read_watermark

    with existing_state(out_dir, shard) as state:
        return state is not None and read_watermark(state) is not None


def _list(args: argparse.Namespace) -> int:
    from archiver.listing import RetriedListing, print_listing
    from archiver.run import open_api

    settings = _settings(args)
    filters = _filters(args, ())
    since, until, now = _window(args)
    skipped: list[str] = []

    async def listing() -> int:
        async with open_api(settings) as api:
            pages = RetriedListing(api, settings.max_attempts)
            return await print_listing(
                pages, filters, since, until, now, args.format, sys.stdout, skipped
            )

    count = asyncio.run(listing())
    log.info("listed %d calls", count)
    if skipped:  # as invalid input rows make a run's exit code 1
        log.warning(
            "%d listed items had a call_id that is not a UUID and were left out",
            len(skipped),
            extra={"event": "listing_bad_ids", "count": len(skipped)},
        )
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from archiver.verify import render_text, report_json, verify_archive

    settings = _settings(args)
    report = verify_archive(settings.out_dir)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(render_text(report, settings.out_dir))
    return 0 if report.ok else 1


def _manifest(args: argparse.Namespace) -> int:
    from archiver.export import export

    settings = _settings(args)
    count = export(settings.out_dir, _shard(args.shard), args.format, sys.stdout)
    sys.stdout.flush()
    log.info("%d calls in the manifest", count, extra={"event": "manifest_exported"})
    return 0


def _inputs(args: argparse.Namespace) -> Iterator[InputItem]:
    paths = list(args.inputs) or ["-"]
    if paths == ["-"] and sys.stdin.isatty():
        raise UsageError("no input: name CSV or text files of call ids, or pipe them on stdin")
    check_sources(paths, args.id_column)
    return read_sources(paths, sys.stdin.buffer, args.id_column)


def _wants_json(args: argparse.Namespace) -> bool:
    """JSON logs asked for by flag or environment, read without the settings (which may be
    what failed)."""
    value = getattr(args, "log_format", None) or os.environ.get("OSVI_LOG_FORMAT", "")
    return str(value).strip().lower() == "json"


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "fake-server":
        try:
            fake_options.config_from_args(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        asyncio.run(fake_options.serve_until_signalled(args))
        return 0
    if args.command == "sync":
        return _sync(args)
    if args.command == "list":
        return _list(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "manifest":
        return _manifest(args)
    if args.command == "demo":
        from archiver.demo import run_demo

        setup_logging(getattr(args, "log_level", "WARNING"), [])
        return asyncio.run(run_demo())
    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    forget_format()
    try:
        return _dispatch(args)
    except RunError as exc:
        return _fatal(args, exc)
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except Exception as exc:  # a bug outside any run: one clear line, exit 70, not a traceback
        log.debug("traceback of the internal error", exc_info=exc)
        return _fatal(args, InternalError.of(exc))


def _fatal(args: argparse.Namespace, exc: RunError) -> int:
    """The error that ended the command, on stderr: a `fatal` JSON event with JSON logs."""
    if json_mode() or _wants_json(args):
        if not json_mode():  # the settings failed before logging was set up
            setup_logging("ERROR", [os.environ.get("OSVI_API_TOKEN", "")], "json")
        log.error("%s", exc, extra={"event": "fatal", "exit_code": exc.exit_code})
    else:
        print(f"osvi-archiver: error: {scrub(str(exc), keep_newlines=True)}", file=sys.stderr)
    return exc.exit_code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit meets no broken pipe again."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
