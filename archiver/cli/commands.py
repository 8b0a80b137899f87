"""What each command of the command line does, from its parsed arguments to its exit code
(cli/main.py only parses argv and maps errors to exit codes). The heavy modules (the run, the fake,
the dry run) are imported by the commands that use them only, so a command starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from archiver.archive import layout as layouts
from archiver.archive.ids import canonical_uuid
from archiver.archive.shard import resolve_shard, shard_text
from archiver.cli.flags import settings_given
from archiver.config.token_and_file import config_file_warnings, token_file_warnings
from archiver.errors import InternalError, LocalError, RunError, UsageError
from archiver.monitoring.logs import json_mode, setup_logging, write_log_file
from archiver.osvi.times import Span, parse_moment

if TYPE_CHECKING:
    from archiver.archive.shard import Shard
    from archiver.config.settings import Settings
    from archiver.engine.inputs import InputItem
    from archiver.engine.outputs import RunResult
    from archiver.monitoring.counts import Progress
    from archiver.osvi.listing import Filters

log = logging.getLogger("archiver.cli.main")
T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio, imported when a command needs it: `--help`, `status` and `completion` start
    without it (start-up, issue 23)."""
    import asyncio

    return asyncio.run(coroutine)


def settings_from(
    args: argparse.Namespace, *, archive: bool = True, log_file: bool = True
) -> Settings:
    """The settings of flags, environment and config file. `archive`: the command works on an
    archive, so out_dir must have been given (a UsageError naming where, before anything)."""
    flags = settings_given(args)
    config = getattr(args, "config", None)
    from archiver.config.settings import choose_config_file, load_settings  # pydantic: here

    settings = load_settings(flags, config_path=config, environ=os.environ)
    # From here on, errors and warnings go out in the format asked for, redacted.
    try:
        setup_logging(
            settings.log_level,
            [settings.token_value() or ""],
            settings.log_format,
            settings.log_file if log_file else None,  # `config show` only shows it
        )
    except UsageError as exc:
        raise UsageError(f"{exc}, given by {settings.source_of('log_file')}") from None
    chosen = choose_config_file(config, os.environ)
    warnings = config_file_warnings(chosen) if chosen else []
    for warning in warnings + token_file_warnings(os.environ):
        log.warning("%s", warning, extra={"event": "config_warning"})
    if archive:
        settings.archive  # noqa: B018 (raises when none was given)
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


def _summary(result: RunResult, *, quiet: bool = False) -> None:
    """§6's summary block on stderr; with JSON logs, the same as one `run_finished` event, so
    stderr stays JSON Lines. `quiet` (-q): nothing after a run that exited 0, else only why
    (the error, the failed calls), the run report and the exit code."""
    from archiver.monitoring.summary import render, render_quiet

    if not json_mode():
        text = render(result.counts, result.seconds, result.manifest, result.report,
                      result.error, result.watermark, result.listing)  # fmt: skip
        write_log_file(text)  # --log-file: the log holds the whole story
        if quiet:
            said = render_quiet(result.counts, result.error, result.report)
            if said is not None:
                with contextlib.suppress(OSError):
                    print(said, file=sys.stderr)
            return
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
            "sync_watermark": result.watermark,
            "listing": result.listing.to_json() if result.listing else None,
        },
    )


def _progress(settings: Settings) -> Progress:
    from archiver.monitoring.progress import choose_progress  # rich: only for a run

    quiet = settings.log_level == "ERROR" and settings.progress == "auto"  # -q: no display
    return choose_progress(
        "never" if quiet else settings.progress,
        on_terminal=sys.stderr.isatty() and settings.log_format == "text",
        interval=settings.status_interval,
    )


def run_command(args: argparse.Namespace) -> int:
    from archiver.engine.assembly import RunOptions
    from archiver.engine.input_feed import run_input
    from archiver.engine.lifecycle import execute

    if args.retry_failed and args.inputs:
        raise UsageError("--retry-failed takes its calls from the archive: give no INPUT")
    settings = settings_from(args)
    _check_metrics_file(settings)
    if layouts.needs_listing_fields(settings.layout) and not settings.with_metadata:
        raise UsageError(
            f"layout {settings.layout!r} needs the call's date or agent: `run` knows them only "
            "with --with-metadata (or use `sync`, whose listing provides them)"
        )
    items = iter(()) if args.retry_failed else _inputs(args)
    if args.dry_run:
        from archiver.engine.dry_run import dry_run_input

        shard = _shard(args.shard)
        return dry_run_input(
            settings,
            items,
            force=args.force,
            retry=args.retry_failed,
            shard=shard,
            retry_not_available=args.retry_not_available,
        )
    progress = _progress(settings)
    # The total only serves a display: no extra read of the input when nobody watches.
    from archiver.engine.inputs import count_ids
    from archiver.monitoring.counts import NoProgress

    counted = not args.retry_failed and not isinstance(progress, NoProgress)
    total = count_ids(list(args.inputs) or ["-"]) if counted else None
    options = RunOptions(
        force=args.force,
        retry_not_available=args.retry_not_available,
        shard=_shard(args.shard),
        total=total,
    )
    source = run_input(
        items, retry_failed=args.retry_failed, retry_not_available=args.retry_not_available
    )
    result = _run(execute(settings, source, progress, options))
    _summary(result, quiet=settings.log_level == "ERROR")
    return result.exit_code


def _shard(text: str | None) -> tuple[int, int] | None:
    return resolve_shard(text, os.environ) if text else None


def _filters(args: argparse.Namespace, default_status: tuple[str, ...]) -> Filters:
    from archiver.osvi.listing import CALL_STATUSES

    statuses = tuple(s.strip() for v in args.status or () for s in v.split(",") if s.strip())
    if "any" in statuses:  # every status: no filter on it
        if len(set(statuses)) > 1:
            raise UsageError("--status any means every status: give it alone")
        return _filters_of(args, ())
    unknown = set(statuses) - set(CALL_STATUSES)
    if unknown:
        raise UsageError(
            f"--status {', '.join(sorted(unknown))}: not one of {', '.join(CALL_STATUSES)} (or any)"
        )
    return _filters_of(args, statuses or default_status)


def _filters_of(args: argparse.Namespace, statuses: tuple[str, ...]) -> Filters:
    from archiver.osvi.listing import Filters

    if args.agent is not None and canonical_uuid(args.agent) is None:
        raise UsageError(f"--agent {args.agent!r} is not a UUID")
    return Filters(
        status=statuses,
        agent_uuid=canonical_uuid(args.agent) if args.agent else None,
        campaign_id=args.campaign,
        campaign_upload_id=args.campaign_upload,
        phone_number=args.phone,
        call_type=args.call_type,
    )


def _window(args: argparse.Namespace) -> Span:
    now = datetime.now(UTC)
    since = parse_moment(args.since, now, end=False, flag="--since") if args.since else None
    until = parse_moment(args.until, now, end=True, flag="--until") if args.until else None
    return Span(since, until, now)


def sync_command(args: argparse.Namespace) -> int:
    from archiver.engine.assembly import RunOptions
    from archiver.engine.lifecycle import execute
    from archiver.engine.sync import make_source, no_watermark

    settings = settings_from(args)
    _check_metrics_file(settings)
    filters = _filters(args, ("picked",))
    span = _window(args)
    shard = _shard(args.shard)
    if span.since is None and not _has_watermark(settings, shard, filters):
        whose = f" (shard {shard_text(shard)})" if shard else ""
        raise no_watermark(f"{settings.archive}{whose}", filters)
    if args.dry_run:
        from archiver.engine.dry_run import dry_run_sync

        return dry_run_sync(
            settings,
            span,
            filters,
            force=args.force,
            shard=shard,
            retry_not_available=args.retry_not_available,
        )
    source = make_source(span, settings.sync_overlap, filters, settings.max_attempts)
    options = RunOptions(
        force=args.force,
        retry_not_available=args.retry_not_available,
        shard=shard,
        command="sync",
    )
    result = _run(execute(settings, source, _progress(settings), options))
    _summary(result, quiet=settings.log_level == "ERROR")
    return result.exit_code


def _has_watermark(settings: Settings, shard: tuple[int, int] | None, filters: Filters) -> bool:
    from archiver.destinations import open_destination
    from archiver.engine.sync import read_watermark

    with open_destination(settings).viewing(shard) as state:
        try:
            return state is not None and read_watermark(state, filters) is not None
        except LocalError:
            return True  # one is there, damaged: the run says so, its report and metrics too


def list_command(args: argparse.Namespace) -> int:
    from archiver.cli.list_calls import print_listing
    from archiver.engine.assembly import open_api
    from archiver.osvi.listing import RetriedListing

    settings = settings_from(args, archive=False)
    filters = _filters(args, ("picked",))  # like sync: --status any for every call
    span = _window(args)
    skipped: list[str] = []
    gaps: list[str] = []

    async def listing() -> int:
        async with open_api(settings) as api:
            pages = RetriedListing(api, settings.max_attempts)
            return await print_listing(pages, filters, span, args.format, sys.stdout, skipped, gaps)

    count = _run(listing())
    log.info("listed %d calls", count)
    if skipped:  # as invalid input rows make a run's exit code 1
        log.warning(
            "%d listed items had a call_id that is not a UUID and were left out",
            len(skipped),
            extra={"event": "listing_bad_ids", "count": len(skipped)},
        )
    if gaps:  # the output lacks calls the listing could not give: never a clean 0
        log.error(
            "the listing is incomplete: %s",
            "; ".join(gaps),
            extra={"event": "listing_incomplete", "count": len(gaps)},
        )
    return 1 if skipped or gaps else 0


def verify_command(args: argparse.Namespace) -> int:
    from archiver.destinations.verify_folder import render_text, report_json, verify_archive

    settings = settings_from(args)
    if settings.in_store:
        from archiver.destinations.store.bucket import StoreDestination
        from archiver.destinations.store.verify_bucket import verify_store

        store = StoreDestination.from_settings(settings)
        report = _run(verify_store(store, deep=args.deep))
    else:
        report = verify_archive(settings.folder, index_lag=_index_lag(settings.folder))
    if args.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print(render_text(report, settings.archive))
    return 0 if report.ok else 1


def _index_lag(folder: Path) -> Callable[[Shard | None], str | None]:
    """What is off with a shard's manifest index in `folder`, every part hashed, if anything."""
    from archiver.destinations.folder import LocalFolder
    from archiver.manifest.export import index_lag

    def lag(shard: Shard | None) -> str | None:
        found = index_lag(LocalFolder(folder), shard, every=True)
        return found.explain() if found is not None else None

    return lag


def check_command(args: argparse.Namespace) -> int:
    """`osvi-archiver check`: the archive held against the API's listing (engine/check.py). With
    --metrics-file, the textfile says how it ended whatever happened, as a run's does."""
    from archiver.engine.check import check, render_text
    from archiver.monitoring.metrics import CheckMetrics, write_check

    settings = settings_from(args)
    _check_metrics_file(settings)
    shard = _shard(args.shard)
    try:
        from archiver.config.settings import require_token

        require_token(settings)
        filters = _filters(args, ("picked",))
        report = _run(check(settings, filters, _window(args), shard))
    except Exception as exc:  # the textfile still says how it ended (70: a bug, as cli.main)
        if settings.metrics_file is not None:
            code = exc.exit_code if isinstance(exc, RunError) else InternalError.exit_code
            write_check(settings.metrics_file, CheckMetrics(code, time.time(), shard=shard))
        raise
    if args.ids:
        sys.stdout.write("".join(f"{missing.call_id}\n" for missing in report.missing))
    elif args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render_text(report))
    sys.stdout.flush()
    log.info(
        "checked %d listed calls: %d missing",
        report.listed,
        len(report.missing),
        extra={"event": "check_finished", "listed": report.listed,
               "missing": len(report.missing), "exit_code": report.exit_code},
    )  # fmt: skip
    if settings.metrics_file is not None:
        unlisted = None if report.unlisted is None else len(report.unlisted)
        write_check(settings.metrics_file, CheckMetrics(
            report.exit_code, time.time(), len(report.missing), report.listed,
            len(report.gaps), unlisted, shard))  # fmt: skip
    return report.exit_code


def manifest_command(args: argparse.Namespace) -> int:
    from archiver.destinations import open_destination
    from archiver.manifest.export import export

    settings = settings_from(args)
    count = export(open_destination(settings), _shard(args.shard), args.format, sys.stdout)
    sys.stdout.flush()
    log.info("%d calls in the manifest", count, extra={"event": "manifest_exported"})
    return 0


def _inputs(args: argparse.Namespace) -> Iterator[InputItem]:
    paths = list(args.inputs) or ["-"]
    if paths == ["-"] and sys.stdin.isatty():
        raise UsageError("no input: name CSV or text files of call ids, or pipe them on stdin")
    from archiver.engine.inputs import check_sources, read_sources

    check_sources(paths, args.id_column)
    return read_sources(paths, sys.stdin.buffer, args.id_column)


def fake_server_command(args: argparse.Namespace) -> int:
    from archiver.fake import options as fake_options

    try:
        fake_options.config_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _run(fake_options.serve_until_signalled(args))
    return 0


def status_command(args: argparse.Namespace) -> int:
    from archiver.cli.status import overview, render
    from archiver.destinations import open_destination

    settings = settings_from(args)
    view = overview(open_destination(settings))
    print(json.dumps(view, indent=2) if args.json else render(view))
    return 0


def config_command(args: argparse.Namespace) -> int:
    """`config show`: the effective settings and where each came from (no archive needed)."""
    from archiver.cli.config_show import render

    settings = settings_from(args, archive=False, log_file=False)
    print(render(settings, as_json=args.json))
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from archiver.cli.demo import run_demo

    setup_logging(getattr(args, "log_level", "WARNING"), [])
    return _run(run_demo())
