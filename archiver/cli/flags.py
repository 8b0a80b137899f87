"""The settings' flags, declared once per setting: the flag's name (settings.FLAG_NAMES),
its `dest` (the setting) and the default its help shows (default_text, below) come from the
settings model, so none can drift from it; a flag that is no setting never reaches it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archiver.config.setting_names import ENV_PREFIX, FLAG_NAMES


@dataclass(frozen=True)
class Flag:
    """How the command line takes one setting; its name (settings.FLAG_NAMES), `dest` (the
    setting) and the default in its help (default_text, below) come from the settings
    model, so neither can drift from it."""

    help: str
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value that turns the setting on


SETTING_FLAGS: dict[str, Flag] = {
    "base_url": Flag("OSVI API origin", metavar="URL"),
    "out_dir": Flag(
        "archive folder, or s3://bucket/prefix, gs://bucket/prefix, az://container/prefix",
        metavar="DIR|URL",
    ),
    "state_dir": Flag(
        "where a bucket destination's state is kept on local disk (one folder per "
        "destination; $XDG_STATE_HOME/osvi-archiver when none)",
        metavar="PATH",
    ),
    "store_endpoint": Flag(
        "the object store's endpoint URL (MinIO, a local test store, a regional endpoint)",
        metavar="URL",
    ),
    "store_region": Flag("the object store's region", metavar="REGION"),
    "store_allow_http": Flag(
        "talk plain http to --store-endpoint (a local test store only)", switch=True
    ),
    "store_sse": Flag(
        "S3 server-side encryption of each object", choices=("AES256", "aws:kms", "aws:kms:dsse")
    ),
    "store_sse_kms_key_id": Flag("the KMS key of --store-sse aws:kms", metavar="KEY"),
    "store_storage_class": Flag(
        "storage class of each object (STANDARD_IA, GLACIER_IR, Cool, NEARLINE, ...)",
        metavar="CLASS",
    ),
    "concurrency": Flag("calls in flight", metavar="N", type=int),
    "max_requests_per_second": Flag(
        "API requests per second, not downloads", metavar="RATE", type=float
    ),
    "max_attempts": Flag("attempts per call", metavar="N", type=int),
    "connect_timeout": Flag("longest wait for a connection", metavar="DURATION"),
    "read_timeout": Flag("longest silence while receiving", metavar="DURATION"),
    "api_timeout": Flag(
        "longest one API request may take, its answer included", metavar="DURATION"
    ),
    "min_speed": Flag(
        "a download slower than this many bytes/s (1024, 16KiB) on average over "
        "--min-speed-time is stopped and retried, as curl's --speed-limit; 0: no floor",
        metavar="SIZE",
    ),
    "min_speed_time": Flag("the window of --min-speed", metavar="DURATION"),
    "max_recording_size": Flag(
        "a recording larger than this fails as too_large instead of filling the disk",
        metavar="SIZE",
    ),
    "max_outage": Flag(
        "how long an API or recording host that does not answer is waited for (calls lose "
        "no attempt meanwhile) before the run stops with exit 69; a host that never answered "
        "in this run is waited for 60 s at most",
        metavar="DURATION",
    ),
    "bwlimit": Flag(
        "total download bandwidth of the run, all downloads together, per second: 10M, 512k "
        "(rclone's units, powers of 1024); 0 or off: no limit",
        metavar="RATE",
    ),
    "max_duration": Flag(
        "stop cleanly this long after the run starts (a nightly window): in-flight calls "
        "cancelled, the manifest, report and metrics written, exit 124; a rerun continues "
        "(rclone's --max-duration); 90m, 6h, 1h30m; 0 or off: no limit",
        metavar="DURATION",
    ),
    "layout": Flag("path of each recording in the archive", metavar="TEMPLATE"),
    "pending_window": Flag(
        "a 404 for a call younger than this is 'pending', tried again by later runs",
        metavar="DURATION",
    ),
    "file_mode": Flag("mode of archived files", metavar="MODE"),
    "allow_insecure_urls": Flag(
        "accept plain-http recording URLs to non-loopback hosts, and recording URLs that "
        "point at this machine while the API is elsewhere",
        switch=True,
    ),
    "progress": Flag(
        "live display on stderr: auto = on a terminal, else a status line every "
        "--status-interval; always; never",
        choices=("auto", "always", "never"),
    ),
    "status_interval": Flag(
        "between two status lines when not on a terminal, or with JSON logs", metavar="DURATION"
    ),
    "keep_run_reports": Flag("run reports kept in runs/", metavar="N", type=int),
    "with_metadata": Flag(
        "also save GET /v1/call/{id} as <stem>.call.json beside each recording", switch=True
    ),
    "with_transcript": Flag("also save the transcript as <stem>.transcript.json", switch=True),
    "metrics_file": Flag(
        "write a Prometheus textfile here at the end of each run, atomically (for "
        "node_exporter's textfile collector)",
        metavar="PATH",
    ),
    "sync_overlap": Flag(
        "how far before the watermark a plain sync starts again", metavar="DURATION"
    ),
    "log_format": Flag(
        "log lines on stderr as text, or JSON Lines (time, level, event, call_id, attempt, "
        "status, error_kind, ...)",
        choices=("text", "json"),
    ),
    "log_file": Flag(
        "append the log (and the summary) to this file, reopened when logrotate moves it; "
        "stderr then gets errors and the summary only",
        metavar="PATH",
    ),
}
# Those of a bucket destination, taken by every command that reads or writes the archive.
STORE_SETTINGS = (
    "state_dir", "store_endpoint", "store_region", "store_allow_http", "store_sse",
    "store_sse_kms_key_id", "store_storage_class",
)  # fmt: skip
# Those a command that only reads a bucket takes (verify, manifest).
STORE_READ_SETTINGS = ("state_dir", "store_endpoint", "store_region", "store_allow_http")
RUN_SETTINGS = (
    "base_url", "out_dir", "concurrency", "max_requests_per_second", "max_attempts",
    "connect_timeout", "read_timeout", "api_timeout", "min_speed", "min_speed_time",
    "max_recording_size", "max_outage", "bwlimit", "max_duration", "layout", "pending_window",
    "file_mode", "allow_insecure_urls", "progress", "status_interval", "keep_run_reports",
    "with_metadata", "with_transcript", "metrics_file", *STORE_SETTINGS,
)  # fmt: skip


# The default each flag's help shows, as the settings model's defaults read (written out so
# that the parser needs no pydantic: tests/config/test_settings.py derives them from the model
# and holds this table to them).
DEFAULT_TEXTS: dict[str, str] = {
    "base_url": "https://api.osvi.ai", "out_dir": "none, required",
    "state_dir": "$XDG_STATE_HOME/osvi-archiver", "store_endpoint": "none",
    "store_region": "none", "store_allow_http": "no", "store_sse": "none",
    "store_sse_kms_key_id": "none", "store_storage_class": "none", "concurrency": "8",
    "max_requests_per_second": "10", "max_attempts": "6", "connect_timeout": "10s",
    "read_timeout": "1m", "api_timeout": "1m", "min_speed": "1KiB", "min_speed_time": "1m",
    "max_recording_size": "4GiB", "max_outage": "5m", "bwlimit": "0", "max_duration": "none",
    "layout": "{call_id}{ext}", "pending_window": "2d", "file_mode": "0o600",
    "allow_insecure_urls": "no", "progress": "auto", "status_interval": "30s",
    "keep_run_reports": "100", "with_metadata": "no", "with_transcript": "no",
    "metrics_file": "none", "sync_overlap": "2h", "log_format": "text", "log_file": "none",
}  # fmt: skip


def default_text(name: str) -> str:
    return DEFAULT_TEXTS[name]


def env_name(name: str) -> str:
    """The environment variable of a setting."""
    return f"{ENV_PREFIX}{name.upper()}"


def add_settings(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The flags of these settings; each reaches the settings only when given (SUPPRESS)."""
    for name in names:
        flag = SETTING_FLAGS[name]
        options: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": f"{flag.help} (default: {default_text(name)}; env {env_name(name)})".replace(
                "%", "%%"
            ),
        }
        if flag.switch:
            options.update(action="store_const", const=True)
        else:
            options.update(metavar=flag.metavar, type=flag.type, choices=flag.choices)
        parser.add_argument(*SHORT_FLAGS.get(name, ()), FLAG_NAMES[name], **options)


# The short flags people reach for (rclone's -n, make's -j, most tools' -o).
SHORT_FLAGS: dict[str, tuple[str, ...]] = {"out_dir": ("-o",), "concurrency": ("-j",)}


def settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gave: every parsed value whose name is a setting."""
    return {key: value for key, value in vars(args).items() if key in FLAG_NAMES}


# The groups of a command's --help, in this order (issue 24: one list of 60 options, sync's own
# filters last after the bucket's, was unreadable), and the options each holds, by dest.
HELP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input", ("inputs", "id_column", "retry_failed")),
    ("destination", ("out_dir", "layout", "file_mode", "with_metadata", "with_transcript")),
    ("API and limits", (
        "base_url", "concurrency", "max_requests_per_second", "max_attempts", "connect_timeout",
        "read_timeout", "api_timeout", "min_speed", "min_speed_time", "max_recording_size",
        "max_outage", "bwlimit", "max_duration", "allow_insecure_urls",
    )),
    ("what to archive", (
        "since", "until", "status", "agent", "campaign", "campaign_upload", "phone", "call_type",
        "sync_overlap", "pending_window", "force", "retry_not_available", "shard",
    )),
    ("output and monitoring", (
        "dry_run", "progress", "status_interval", "keep_run_reports", "metrics_file",
        "log_format", "log_file", "log_level", "config", "format", "json", "ids", "deep",
        "version",
    )),
    ("bucket (an s3://, gs:// or az:// --out)", (
        "state_dir", "store_endpoint", "store_region", "store_allow_http", "store_sse",
        "store_sse_kms_key_id", "store_storage_class",
    )),
)  # fmt: skip


def arrange_help(parser: argparse.ArgumentParser) -> None:
    """Put each option of `parser` into its HELP_GROUPS group (argparse groups only what is
    added to a group; the options are declared once, per setting, so they are moved after).
    An option in no group stays under "options" (-h)."""
    where = {dest: title for title, dests in HELP_GROUPS for dest in dests}
    groups: dict[str, Any] = {}
    for title, _ in HELP_GROUPS:
        groups[title] = parser.add_argument_group(title)
    for group in list(parser._action_groups):
        if group.title in groups:
            continue
        for action in list(group._group_actions):
            target = where.get(action.dest)
            if target is not None:
                group._group_actions.remove(action)
                groups[target]._group_actions.append(action)
    order = {dest: n for _, dests in HELP_GROUPS for n, dest in enumerate(dests)}
    for group in groups.values():
        group._group_actions.sort(key=lambda action: order[action.dest])
        if not group._group_actions:
            parser._action_groups.remove(group)
