"""What a run leaves behind, whatever happened: the manifest, its run report and the metrics
textfile, all three saying the exit code the process ends with (§6, §7); and the temp files
of atomic writes a power cut left, removed when the next run starts."""

from __future__ import annotations

import asyncio
import glob
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from archiver import __version__
from archiver.archive.names import RUNS_DIR, manifest_name, parts_dir
from archiver.archive.shard import MARK, Shard, shard_label, shard_suffix
from archiver.archive.storage import remove_stale_temps
from archiver.config.settings import Settings
from archiver.destinations.base import Destination
from archiver.errors import InternalError, Interrupted, LocalError, RunError
from archiver.manifest.writer import prune_run_reports, write_manifest, write_run_report
from archiver.monitoring import metrics
from archiver.monitoring.counts import Counts
from archiver.monitoring.summary import exit_code
from archiver.osvi.reconcile import WindowReport
from archiver.redaction import scrub
from archiver.state.call_records import utc_now
from archiver.state.database import State
from archiver.state.meta import LAST_RUN_KEY, LAST_SUCCESS_KEY, WATERMARK_KEY, watermark_at

log = logging.getLogger("archiver.engine.lifecycle")


@dataclass
class RunResult:
    run_id: str
    counts: Counts
    seconds: float
    error: RunError | None = None
    finished_at: float | None = None  # clock() when the metrics were written
    max_loop_lag_ms: float | None = None  # the event loop's longest stall (engine/loop_lag.py)
    manifest: Path | str | None = None
    report: Path | str | None = None
    watermark: str | None = None  # sync's, as the run leaves it (ISO 8601, UTC)
    listing: WindowReport | None = None  # sync's check of its own window at the end
    extra: dict[str, Any] = field(default_factory=dict)
    said: set[str] = field(default_factory=set)  # failures to write an output, logged once

    @property
    def exit_code(self) -> int:
        return exit_code(self.counts, self.error)


@dataclass(frozen=True)
class Described:
    """What the outputs say of a run besides its result."""

    started_at: str  # UTC, ISO 8601
    command: str  # run or sync: a label of the metrics
    destination: Destination
    shard: Shard | None
    clock: Callable[[], float]  # wall clock: when the metrics say the run ended
    # Whether the run was asked to stop long enough ago that a manifest write must cut short.
    stopping: Callable[[], bool] = lambda: False
    # Whether another run holds the archive now (a store's lease lost): nothing more is written
    # into the archive, where the new holder writes; the metrics, local, still say the code.
    fenced: Callable[[], bool] = lambda: False


async def finish(
    settings: Settings,
    state: State,
    result: RunResult,
    run: Described,
    signals: list[Interrupted],
) -> None:
    """The manifest, the run report and the metrics, each saying the exit code the process
    ends with. Written off the event loop (a signal meanwhile is still seen); when the exit
    code changes while they are written (a write fails, a signal arrives), the report and the
    metrics are written again with the new one. The last success moves only on a real 0.
    The run's end is recorded in the state before a store's snapshot is taken, so that
    `status` elsewhere and a new machine's metrics see it (issue 21)."""
    try:
        result.extra["last_success_before"] = state.get_meta(LAST_SUCCESS_KEY)
    except LocalError:
        result.extra["last_success_before"] = None
    for _ in range(3):  # the code changes at most twice: a failed write, then a signal
        _take_signal(result, signals)
        code = result.exit_code
        await asyncio.to_thread(_write_outputs, settings, state, result, run)
        _take_signal(result, signals)
        if result.exit_code == code:
            break
    if result.error is not None and not isinstance(result.error, Interrupted):
        log.error(
            "%s",
            result.error,
            extra={"event": "fatal", "exit_code": result.exit_code, "run_id": result.run_id},
        )


def _last_run(result: RunResult, run: Described) -> dict[str, Any]:
    """What `osvi-archiver status` shows of the last run."""
    return {"run_id": result.run_id, "command": run.command, "started_at": run.started_at,
            "finished_at": utc_now(), "seconds": round(result.seconds, 3),
            "exit_code": result.exit_code, "counts": result.counts.to_json()}  # fmt: skip


def _take_signal(result: RunResult, signals: list[Interrupted]) -> None:
    if signals and result.error is None:
        result.error = signals[0]


def _write_outputs(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    """The manifest, the run report and the metrics, even after a run-level error, each
    tried whatever became of the one before. When one cannot be written (the disk is full),
    the state still holds the truth and the next run rewrites it; the run then ends with that
    error unless it already had one (so the report and metrics written after say so). A
    manifest written already is not written again when the report is."""
    writes = (
        ("the manifest", _write_manifest),
        ("the run's end in the state", _record_end),
        ("the state's snapshot", _save_state),
        ("the run report", _write_report),
        ("the metrics file", _write_metrics),
    )
    for what, write in writes:
        if write is _write_manifest and result.manifest is not None:
            continue
        if run.fenced() and write not in (_write_metrics, _record_end):  # the latter: local
            log.warning("%s is not written: another run holds the archive now", what,
                        extra={"event": "not_written"})  # fmt: skip
            continue
        try:
            write(settings, state, result, run)
        except LocalError as exc:
            _not_written(result, what, exc)
        except Exception as exc:
            log.debug("traceback", exc_info=exc, extra={"event": "internal_error"})
            _not_written(result, what, InternalError.of(exc))


def _not_written(result: RunResult, what: str, error: RunError) -> None:
    """One of the outputs could not be written. When that ends the run (it had no error yet),
    the `fatal` line says it once, at the end; else it is said here, once: not again when
    the outputs are written a second time (the exit code changed) and fail the same way."""
    if result.error is None:
        result.error = error
        return
    text = str(error)
    if text == str(result.error) or text in result.said:
        return
    result.said.add(text)
    log.error("could not write %s: %s", what, text, extra={"event": "not_written"})


# A run that was asked to stop writes the manifest parts for this long after the signal at
# most: what is left (a large first write, say) is the next run's; the report and metrics
# still come, within the 5 s a signal is answered in.
STOPPING_BUDGET = 2.0


def _write_manifest(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    result.manifest = write_manifest(state, run.destination, settings.file_mode, run.stopping)


def _record_end(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    """The last run, and the last success when the code is 0 so far (a code that changes
    afterwards, a write failing, puts the earlier last success back). Recorded before the
    store's snapshot and the metrics, which then carry them."""
    result.finished_at = run.clock()
    state.set_meta(LAST_RUN_KEY, json.dumps(_last_run(result, run)))
    before = result.extra.get("last_success_before")
    if result.exit_code == 0:
        state.set_meta(LAST_SUCCESS_KEY, repr(result.finished_at))
    elif isinstance(before, str):
        state.set_meta(LAST_SUCCESS_KEY, before)
    else:
        state.delete_meta(LAST_SUCCESS_KEY)


def _save_state(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    """A store's snapshot of the state, after the manifest's bookkeeping is in it."""
    run.destination.save_state(state)


def _write_report(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    mark = _watermark(state, result)
    result.watermark = mark.isoformat().replace("+00:00", "Z") if mark else None
    summary = {
        "run_id": result.run_id,
        "tool": "osvi-archiver",
        "tool_version": __version__,
        "started_at": run.started_at,
        "finished_at": utc_now(),
        "seconds": round(result.seconds, 3),
        "exit_code": result.exit_code,
        "error": scrub(str(result.error)) if result.error else None,
        "interrupted": isinstance(result.error, Interrupted),
        "settings": settings.redacted(),
        "shard": shard_label(state.shard) or None,
        "counts": result.counts.to_json(),
        "max_loop_lag_ms": result.max_loop_lag_ms,
        "sync_watermark": result.watermark,
        "listing": result.listing.to_json() if result.listing else None,
    }
    result.report = write_run_report(
        state, run.destination, result.run_id, summary, settings.file_mode
    )
    try:  # housekeeping: the report is written, the run's outcome stands
        prune_run_reports(run.destination, settings.keep_run_reports, state.shard)
    except LocalError as exc:
        log.warning("could not remove old run reports: %s", exc, extra={"event": "prune_failed"})


def _write_metrics(settings: Settings, state: State, result: RunResult, run: Described) -> None:
    if result.finished_at is None:  # the state could not record the run's end
        result.finished_at = run.clock()
    finished = result.finished_at
    path = settings.metrics_file
    if path is None:
        return
    last = repr(finished) if result.exit_code == 0 else state.get_meta(LAST_SUCCESS_KEY)
    metrics.write(
        path,
        metrics.RunMetrics(
            command=run.command,
            counts=result.counts,
            seconds=result.seconds,
            exit_code=result.exit_code,
            finished_at=finished,
            last_success_at=float(last) if last else None,
            shard=run.shard,
            watermark=mark.timestamp() if (mark := _watermark(state, result)) else None,
            listing=result.listing,
        ),
    )


def _key(result: RunResult) -> str:
    """The watermark a run's outputs show: its own filter set's for a sync, else the
    archive's (the default listing's)."""
    return result.listing.watermark_key if result.listing else WATERMARK_KEY


def _watermark(state: State, result: RunResult) -> datetime | None:
    """The watermark the outputs show. One the state holds damaged is shown as none,
    and ends the run with its LocalError (exit 4) unless it had an error already: the report
    and the metrics, written again with the new code, then say 4 too."""
    try:
        mark = watermark_at(state, _key(result))
    except LocalError as exc:
        result.error = result.error or exc
        return None
    return mark


METRICS_TEMP_AGE = 3600.0  # a metrics folder is shared: only temp files this old are stale


def remove_stale_temps_of(settings: Settings, root: Path, shard: Shard | None) -> None:
    """Temp files of atomic writes (manifest, run reports, metrics) a power cut left: only
    this run's own names (shards share the folder), the metrics folder's only when old. The
    manifest's temps (index and parts) are in its parts folder, never in the archive's root:
    a root of ten million recordings is not listed on every run. Until that folder exists
    (an archive whose manifest is not schema 2 yet), the root is searched, once."""
    out = root  # a store's writes leave no temp file: its local folder has none of these
    parts = out / parts_dir(shard)
    removed = remove_stale_temps(parts, "*")
    if not parts.is_dir():
        removed += remove_stale_temps(out, glob.escape(manifest_name(shard)))
    reports = "*" + glob.escape(f"{shard_suffix(shard)}.json")
    removed += remove_stale_temps(out / RUNS_DIR, reports, unless=None if shard else MARK)
    if settings.metrics_file is not None:
        folder, name = settings.metrics_file.parent, glob.escape(settings.metrics_file.name)
        removed += remove_stale_temps(folder, name, older_than=METRICS_TEMP_AGE)
    if removed:
        log.info("removed %d temp files a crash left", removed, extra={"event": "stale_temps"})
