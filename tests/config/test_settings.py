"""Settings: defaults, precedence, value forms, layout safety, token secrecy, usage errors."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from archiver.config.setting_names import FLAG_NAMES
from archiver.config.settings import (
    Settings,
    choose_config_file,
    load_settings,
    require_token,
)
from archiver.config.token_and_file import config_file_warnings
from archiver.config.units import parse_duration
from archiver.errors import UsageError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TOKEN = "tok-0123456789ab"


def load(
    flags: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    config: Path | None = None,
) -> Settings:
    return load_settings(
        flags or {}, config_path=None if config is None else str(config), environ=environ or {}
    )


def write_config(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def usage_message(**kwargs: Any) -> str:
    with pytest.raises(UsageError) as caught:
        load(**kwargs)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_defaults_match_the_spec_table() -> None:
    settings = load()
    assert settings.api_token is None
    assert settings.base_url == "https://api.osvi.ai"
    assert settings.out_dir is None  # issue 24: no default, required by each archive command
    assert (settings.concurrency, settings.max_requests_per_second) == (8, 10.0)
    assert settings.max_attempts == 6
    assert (settings.connect_timeout, settings.read_timeout) == (10.0, 60.0)
    assert settings.layout == "{call_id}{ext}"
    assert not settings.with_metadata
    assert not settings.with_transcript
    assert (settings.pending_window, settings.sync_overlap) == (48 * 3600, 2 * 3600)
    assert settings.file_mode == 0o600
    assert not settings.allow_insecure_urls
    assert (settings.progress, settings.log_format, settings.log_level) == ("auto", "text", "INFO")
    assert settings.metrics_file is None
    assert settings.keep_run_reports == 100


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = write_config(tmp_path, "concurrency = 3\nmax_attempts = 3\nkeep_run_reports = 3\n")
    environ = {"OSVI_CONCURRENCY": "2", "OSVI_MAX_ATTEMPTS": "2"}
    settings = load({"concurrency": 1}, environ, config)
    assert settings.concurrency == 1
    assert settings.max_attempts == 2
    assert settings.keep_run_reports == 3
    assert settings.read_timeout == 60.0


def test_config_file_comes_from_osvi_config_when_no_flag(tmp_path: Path) -> None:
    config = write_config(tmp_path, "concurrency = 5\n")
    settings = load_settings({}, config_path=None, environ={"OSVI_CONFIG": str(config)})
    assert settings.concurrency == 5
    assert choose_config_file(None, {"OSVI_CONFIG": str(config)}) == config
    assert choose_config_file("other.toml", {"OSVI_CONFIG": str(config)}) == Path("other.toml")
    assert choose_config_file(None, {}) is None


def test_env_is_read_only_from_the_given_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSVI_CONCURRENCY", "99")
    assert load().concurrency == 8
    assert Settings().concurrency == 8


def test_empty_env_var_counts_as_unset() -> None:
    assert load(environ={"OSVI_CONCURRENCY": "", "OSVI_API_TOKEN": ""}).concurrency == 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("48h", 172800.0), ("7d", 604800.0),
     ("1.5h", 5400.0), (" 2H ", 7200.0), (30, 30.0), (2.5, 2.5), ("0", 0.0),
     # as rclone and Go write them
     ("1h30m", 5400.0), ("2d12h", 216000.0), ("1m30s", 90.0), ("500ms", 0.5), ("1w", 604800.0),
     ("1h 30m", 5400.0)],
)  # fmt: skip
def test_parse_duration_accepts_numbers_and_units(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "h", "10x", "-5s", "1e3", "10 minutes", "inf", -1, "1h30", "m1", "1hh", "1h-5m",
     "1 0s", "1 5", "6 30m"],  # spaces only between number-unit pairs
)  # fmt: skip
def test_parse_duration_rejects_nonsense(text: str | int) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_with_units_from_every_source(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'pending_window = "7d"\nsync_overlap = 600\n')
    settings = load({"read_timeout": "2m"}, {"OSVI_CONNECT_TIMEOUT": "1.5s"}, config)
    assert settings.read_timeout == 120.0
    assert settings.connect_timeout == 1.5
    assert (settings.pending_window, settings.sync_overlap) == (604800.0, 600.0)


@pytest.mark.parametrize("given", ["0", "0s", "off", "OFF", "none", 0])
def test_max_duration_zero_or_off_is_no_limit(given: str | int) -> None:
    assert load({"max_duration": given}).max_duration is None
    assert load({"max_duration": "1h30m"}).max_duration == 5400.0


@pytest.mark.parametrize(("given", "rate"), [("off", 0), ("none", 0), ("0", 0), ("8MiB", 8 << 20)])
def test_bwlimit_off_is_no_cap(given: str, rate: int) -> None:
    assert load({"bwlimit": given}).bwlimit == rate


def test_zero_timeout_is_refused() -> None:
    assert "connect_timeout from --connect-timeout" in usage_message(
        flags={"connect_timeout": "0s"}
    )


@pytest.mark.parametrize("given", [0o640, "0o640", "0640", "640", " 0O640 "])
def test_file_mode_forms(given: int | str) -> None:
    assert load({"file_mode": given}).file_mode == 0o640


@pytest.mark.parametrize("given", ["0o1000", "rw-------", "0o400", "0o044", "9", True, -1])
def test_file_mode_out_of_range_or_not_owner_rw_is_refused(given: int | str | bool) -> None:
    assert "invalid file_mode from --file-mode" in usage_message(flags={"file_mode": given})


def test_decimal_file_mode_in_toml_explains_octal(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file_mode = 600\n")
    message = usage_message(config=config)
    assert f"file_mode in {config}" in message
    assert "0o600" in message


@pytest.mark.parametrize(
    "layout",
    ["{yyyy}/{mm}/{dd}/{call_id}{ext}", "{agent_uuid}/{call_id}{ext}", "calls/{call_id}.x{ext}"],
)
def test_layouts_inside_out_dir_are_accepted(layout: str) -> None:
    assert load({"layout": layout}).layout == layout


@pytest.mark.parametrize(
    ("layout", "reason"),
    [
        ("/{call_id}{ext}", "relative"),
        ("../{call_id}{ext}", r"`\.\.`"),
        ("a/../../{call_id}{ext}", r"`\.\.`"),
        ("a//{call_id}{ext}", "empty"),
        ("./{call_id}{ext}", "empty"),
        ("{call_id}/{ext}", "empty"),
        ("a\\..\\{call_id}{ext}", "relative"),
        ("{yyyy}/{ext}", r"must contain \{call_id\}"),
        ("{call_id}", r"must end with \{ext\}"),
        ("{call_id}{ext}.bak", r"must end with \{ext\}"),
        ("{call_id}{ext}{ext}", r"must end with \{ext\}"),
        ("{home}/{call_id}{ext}", r"unknown placeholder \{home\}"),
        ("{call_id.hex}{ext}", "unknown placeholder"),
        ("{call_id!r}{ext}", "no format spec"),
        ("{call_id:>40}{ext}", "no format spec"),
        ("{call_id{ext}", "braces"),
    ],
)
def test_unsafe_or_malformed_layouts_are_refused(layout: str, reason: str) -> None:
    message = usage_message(flags={"layout": layout})
    assert "invalid layout from --layout" in message
    assert re.search(reason, message)


def test_token_is_masked_everywhere_it_could_be_shown() -> None:
    settings = load(environ={"OSVI_API_TOKEN": TOKEN})
    assert settings.token_value() == TOKEN
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert TOKEN not in shown
    redacted = settings.redacted()
    assert redacted["api_token"] == "***"
    assert TOKEN not in json.dumps(redacted)


def test_redacted_lists_every_setting_as_json() -> None:
    redacted = load({"out_dir": "recordings"}).redacted()
    assert set(redacted) == set(Settings.model_fields)
    assert redacted["api_token"] is None
    assert redacted["file_mode"] == "0o600"
    assert redacted["out_dir"] == "recordings"
    assert load().redacted()["out_dir"] is None
    json.dumps(redacted)


def test_token_from_toml_and_env_wins(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'api_token = "{TOKEN}"\n')
    assert require_token(load(config=config)) == TOKEN
    from_env = load(environ={"OSVI_API_TOKEN": "env-token-456789"}, config=config)
    assert from_env.token_value() == "env-token-456789"


def test_missing_token_says_where_to_put_it() -> None:
    with pytest.raises(UsageError, match="set OSVI_API_TOKEN, or OSVI_API_TOKEN_FILE") as caught:
        require_token(load())
    assert "LoadCredential=osvi-api-token" in str(caught.value)
    assert "api_token in the config file" in str(caught.value)


def test_token_as_a_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="never a flag"):
        load({"api_token": TOKEN})


def test_a_bad_token_type_never_echoes_the_value(tmp_path: Path) -> None:
    config = write_config(tmp_path, "api_token = 1234567890123456\n")
    message = usage_message(config=config)
    assert f"api_token in {config}" in message
    assert "1234567890123456" not in message


def test_missing_config_named_by_flag(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = usage_message(config=missing)
    assert str(missing) in message
    assert "--config" in message


def test_missing_config_named_by_env(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(UsageError, match="OSVI_CONFIG") as caught:
        load_settings({}, config_path=None, environ={"OSVI_CONFIG": str(missing)})
    assert str(missing) in str(caught.value)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'concurrency = 4\nlayout = "{call_id}{ext}\n')
    message = usage_message(config=config)
    assert str(config) in message
    assert "line 2" in message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, "concurency = 4\nbase-url = 'https://x.test'\nzzz = 1\n")
    message = usage_message(config=config)
    assert f"unknown key 'concurency' in {config}; did you mean 'concurrency'?" in message
    assert "did you mean 'base_url'?" in message
    assert "'zzz'" in message


def test_wrong_value_names_key_and_flag() -> None:
    assert "invalid concurrency from --concurrency" in usage_message(flags={"concurrency": 0})


def test_wrong_value_names_key_and_env_var(tmp_path: Path) -> None:
    config = write_config(tmp_path, "concurrency = 4\n")
    message = usage_message(environ={"OSVI_CONCURRENCY": "many"}, config=config)
    assert "invalid concurrency from OSVI_CONCURRENCY" in message
    assert "'many'" in message


def test_wrong_value_names_key_and_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'concurrency = "lots"\nprogress = "sometimes"\n')
    message = usage_message(config=config)
    assert f"invalid concurrency in {config}" in message
    assert f"invalid progress in {config}" in message


def test_log_level_from_flags_is_named_as_verbosity() -> None:
    assert "log_level from -v/-q" in usage_message(flags={"log_level": "TRACE"})


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("no", False)],
)
def test_booleans_from_env(text: str, value: bool) -> None:
    assert load(environ={"OSVI_WITH_METADATA": text}).with_metadata is value


def test_choices_from_env_ignore_case() -> None:
    settings = load(environ={"OSVI_LOG_LEVEL": "debug", "OSVI_PROGRESS": "Never"})
    assert (settings.log_level, settings.progress) == ("DEBUG", "never")


@pytest.mark.parametrize(
    "url", ["ftp://api.osvi.ai", "api.osvi.ai", "https://", "https://u:p@api.osvi.ai",
            "https://api.osvi.ai/?x=1", "http://api.osvi.ai"],
)  # fmt: skip
def test_bad_base_urls_are_refused(url: str) -> None:
    assert "invalid base_url from OSVI_BASE_URL" in usage_message(environ={"OSVI_BASE_URL": url})


def test_base_url_loses_trailing_slash_and_allows_http_only_where_safe() -> None:
    assert load({"base_url": "https://api.osvi.ai/"}).base_url == "https://api.osvi.ai"
    assert load({"base_url": "http://127.0.0.1:8080/"}).base_url == "http://127.0.0.1:8080"
    insecure = {"base_url": "http://osvi.internal", "allow_insecure_urls": True}
    assert load(insecure).base_url == "http://osvi.internal"


def test_relative_paths_in_config_file_are_relative_to_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'out_dir = "archive"\nmetrics_file = "m/osvi.prom"\n')
    settings = load(config=config)
    assert settings.out_dir == tmp_path / "archive"
    assert settings.metrics_file == tmp_path / "m" / "osvi.prom"
    assert load({"out_dir": "elsewhere"}, config=config).out_dir == Path("elsewhere")


def test_flag_names_cover_every_setting_but_the_token() -> None:
    assert set(FLAG_NAMES) == set(Settings.model_fields) - {"api_token"}
    assert FLAG_NAMES["max_requests_per_second"] == "--max-rps"
    assert FLAG_NAMES["out_dir"] == "--out"
    assert FLAG_NAMES["sync_overlap"] == "--overlap"


def test_unknown_flag_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not settings flags"):
        load({"concurrancy": 3})


def test_world_readable_config_with_token_draws_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'api_token = "{TOKEN}"\n', mode=0o644)
    [warning] = config_file_warnings(config)
    assert str(config) in warning
    assert "0o644" in warning
    assert f"chmod 600 {config}" in warning
    assert TOKEN not in warning


def test_private_config_or_no_token_draws_no_warning(tmp_path: Path) -> None:
    assert config_file_warnings(write_config(tmp_path, f'api_token = "{TOKEN}"\n')) == []
    assert config_file_warnings(write_config(tmp_path, "concurrency = 2\n", mode=0o644)) == []


def test_example_config_loads_unchanged() -> None:
    assert load(config=EXAMPLE).concurrency == Settings().concurrency


def test_example_config_documents_every_setting_at_its_default() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    commented = set(re.findall(r"^# (\w+) = ", text, flags=re.MULTILINE))
    assert set(Settings.model_fields) == set(values) | commented
    defaults = Settings()
    for key, value in values.items():
        assert getattr(Settings(**{key: value}), key) == getattr(defaults, key), key
    for key in commented:
        assert getattr(defaults, key) is None, key


def test_the_bounds_of_each_attempt_are_settings_with_flags() -> None:
    from archiver.cli.flags import settings_given
    from archiver.cli.parser import build_parser

    args = build_parser().parse_args(
        ["run", "--api-timeout", "5s", "--min-speed", "16KiB", "--min-speed-time", "20s",
         "--max-recording-size", "1GiB", "--max-outage", "2m"]
    )  # fmt: skip
    flags = settings_given(args)
    settings = load(flags)
    assert settings.api_timeout == 5.0
    assert settings.min_speed == 16 * 1024
    assert settings.min_speed_time == 20.0
    assert settings.max_recording_size == 1 << 30
    assert settings.max_outage == 120.0


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("64KiB", 65536), ("16M", 16 << 20), ("4GiB", 4 << 30), ("1.5k", 1536)],
)
def test_sizes_take_bytes_or_binary_units(text: str, size: int) -> None:
    assert load({"max_recording_size": text}).max_recording_size == size


@pytest.mark.parametrize("text", ["-1", "lots", "1e9", "4 parsecs", "1" * 40])
def test_a_size_that_is_not_one_names_the_setting(text: str) -> None:
    assert "invalid max_recording_size from --max-recording-size" in usage_message(
        flags={"max_recording_size": text}
    )


@pytest.mark.parametrize(
    "token", ["Qz9w\nDf8v-ghij-klmn", "Qz9w Df8v-01234567", "Qz9wö-01234567ab"]
)
def test_a_token_that_cannot_go_in_a_header_is_refused_without_showing_it(token: str) -> None:
    message = usage_message(environ={"OSVI_API_TOKEN": token})
    assert "api_token" in message
    assert "line break" in message
    assert "Qz9w" not in message
    assert "Df8v" not in message


def test_a_token_file_s_trailing_newline_is_cut() -> None:
    assert load(environ={"OSVI_API_TOKEN": TOKEN + "\n"}).token_value() == TOKEN


def _model_default_text(name: str) -> str:
    """A setting's default as the model holds it, shown as the flag's help shows defaults."""
    from archiver.config.units import (
        duration_text,
        parse_duration,
        parse_file_mode,
        parse_size,
        size_text,
    )

    if name == "state_dir":
        return "$XDG_STATE_HOME/osvi-archiver"
    if name == "out_dir":  # no default: every command on an archive needs it given
        assert Settings.model_fields[name].default is None
        return "none, required"
    field = Settings.model_fields[name]
    value = field.default
    parsers = {getattr(m, "func", None) for m in field.metadata}
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if parse_duration in parsers:
        return duration_text(value)
    if parse_size in parsers:
        return size_text(value)
    if parse_file_mode in parsers:
        return f"0o{value:o}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_the_parsers_tables_are_the_settings_models() -> None:
    """The parser is built without the model (start-up, issue 23): its tables of names and
    defaults must say what the model says, or a default in --help would lie."""
    from archiver.cli.flags import DEFAULT_TEXTS, SETTING_FLAGS
    from archiver.config.setting_names import SETTINGS

    assert tuple(Settings.model_fields) == SETTINGS
    assert {name: _model_default_text(name) for name in SETTING_FLAGS} == DEFAULT_TEXTS


def test_each_settings_flag_is_named_and_defaulted_by_the_settings_model() -> None:
    from archiver.cli.flags import SETTING_FLAGS, default_text, settings_given
    from archiver.cli.parser import build_parser

    # Every setting but the token (never a flag) and log_level (-v/-q) has its flag.
    assert set(SETTING_FLAGS) == set(Settings.model_fields) - {"api_token", "log_level"}
    parser = build_parser()
    helps = {
        action.dest: action.help or ""
        for sub in parser._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
        for action in sub._actions
    }
    for name in SETTING_FLAGS:
        expected = f"(default: {default_text(name)}; env OSVI_{name.upper()})"
        assert helps[name].endswith(expected), name
    assert default_text("max_outage") == "5m"
    assert default_text("max_recording_size") == "4GiB"
    assert default_text("file_mode") == "0o600"
    assert default_text("pending_window") == "2d"
    assert default_text("with_metadata") == "no"
    assert default_text("metrics_file") == "none"
    args = parser.parse_args(["run", "--force", "--shard", "0/2", "--max-rps", "3", "-v"])
    assert settings_given(args) == {"max_requests_per_second": 3.0, "log_level": "DEBUG"}


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/p?X-Amz-Signature=SECRETSIG",
        "s3://bucket/p#SECRETSIG",
        "gs://B/p?sig=SECRETSIG",
        "ftp://bucket/p?sig=SECRETSIG",
        "s3:/bucket/p?sig=SECRETSIG",
        "s3://bucket/../p?sig=SECRETSIG",
    ],
)
def test_a_store_url_with_a_query_is_refused_without_echoing_the_query(url: str) -> None:
    for given in ({"flags": {"out_dir": url}}, {"environ": {"OSVI_OUT_DIR": url}}):
        message = usage_message(**given)
        assert "invalid out_dir" in message
        assert "SECRETSIG" not in message


def test_an_archive_command_without_out_dir_is_a_usage_error_naming_where_to_give_it() -> None:
    settings = load()
    with pytest.raises(UsageError) as caught:
        settings.archive  # noqa: B018
    message = str(caught.value)
    for where in ("--out", "OSVI_OUT_DIR", "out_dir"):
        assert where in message
    assert caught.value.exit_code == 2
    assert load({"out_dir": "a"}).archive == Path("a")
