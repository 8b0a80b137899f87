"""The settings' names, their environment variables and their flags, without the settings
model: the command line's parser (`--help`, `completion`) is built from them without importing
pydantic (start-up, issue 23). tests/config/test_settings.py holds them to the model."""

from __future__ import annotations

from collections.abc import Mapping

ENV_PREFIX = "OSVI_"

# Every setting, in the model's order (config/settings.py).
SETTINGS = (
    "api_token", "allow_insecure_urls", "base_url", "out_dir", "state_dir", "store_endpoint",
    "store_region", "store_allow_http", "store_sse", "store_sse_kms_key_id",
    "store_storage_class", "concurrency", "max_requests_per_second", "max_attempts",
    "connect_timeout", "read_timeout", "api_timeout", "min_speed", "min_speed_time",
    "max_recording_size", "bwlimit", "max_duration", "max_outage", "layout", "with_metadata",
    "with_transcript", "pending_window", "sync_overlap", "file_mode", "progress",
    "status_interval", "log_format", "log_level", "log_file", "metrics_file", "keep_run_reports",
)  # fmt: skip

# The flag that sets each setting, for messages; api_token has none, by design (SPEC §3).
FLAG_NAMES: Mapping[str, str] = {
    **{name: f"--{name.replace('_', '-')}" for name in SETTINGS if name != "api_token"},
    **{"out_dir": "--out", "max_requests_per_second": "--max-rps", "sync_overlap": "--overlap"},
    "log_level": "-v/-q",
}
