"""The one settings model: every setting of SPEC §3, declared once, typed and validated.

Sources, highest first: command-line flags > `OSVI_*` environment variables > the TOML config
file > defaults. A bad value anywhere becomes a `UsageError` naming the key and where it came from.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from archiver.archive import layout as layouts
from archiver.config.out_dir import StoreUrl, is_store_url, location, shown_url
from archiver.config.setting_names import ENV_PREFIX, FLAG_NAMES
from archiver.config.token_and_file import default_config, read_token_file, token_file
from archiver.config.units import (
    check_base_url,
    check_endpoint,
    clean_token,
    lower,
    no_limit_when_zero,
    parse_duration,
    parse_file_mode,
    parse_size,
    upper,
    zero_when_off,
)
from archiver.errors import UsageError
from archiver.net.urls import is_loopback

# The units' types as the model validates them (config/units.py parses, without pydantic).
Seconds = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]

_PATH_KEYS = ("out_dir", "metrics_file", "state_dir", "log_file")
# The env and TOML values for the `Settings(...)` call inside `load_settings`.
_LOADING: ContextVar[tuple[Mapping[str, str], Mapping[str, Any]] | None] = ContextVar(
    "archiver_settings_loading", default=None
)


class Settings(BaseSettings):
    """Every setting of SPEC §3. Build it with `load_settings`; `Settings()` is the defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    api_token: Annotated[SecretStr | None, BeforeValidator(clean_token)] = None
    # Declared before base_url so base_url's validator can read it.
    allow_insecure_urls: bool = False
    base_url: Annotated[str, AfterValidator(check_base_url)] = "https://api.osvi.ai"
    # A folder, or an object store's s3://, gs:// or az:// URL (config/out_dir.py, README
    # "Destinations").
    # No default (issue 24): a forgotten --out must not write personal data into whatever
    # folder the command ran in. `archive` says so when a command needs it.
    out_dir: Annotated[Path | StoreUrl | None, BeforeValidator(location)] = None
    # Where the state of a bucket destination is kept (None: the XDG state folder).
    state_dir: UserPath | None = None
    store_endpoint: Annotated[str | None, AfterValidator(check_endpoint)] = None
    store_region: str | None = None
    store_allow_http: bool = False
    store_sse: Literal["AES256", "aws:kms", "aws:kms:dsse"] | None = None
    store_sse_kms_key_id: str | None = None
    store_storage_class: str | None = None
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 8
    max_requests_per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 10.0
    max_attempts: Annotated[int, Field(ge=1)] = 6
    connect_timeout: Annotated[Seconds, Field(gt=0)] = 10.0
    read_timeout: Annotated[Seconds, Field(gt=0)] = 60.0
    api_timeout: Annotated[Seconds, Field(gt=0)] = 60.0  # one API request, answer included
    min_speed: Annotated[Size, Field(ge=0)] = 1024  # bytes/s over min_speed_time; 0: no floor
    min_speed_time: Annotated[Seconds, Field(gt=0)] = 60.0
    max_recording_size: Annotated[Size, Field(gt=0)] = 4 << 30
    bwlimit: Annotated[Size, Field(ge=0), BeforeValidator(zero_when_off)] = 0  # 0/off: none
    # stop cleanly after this; 0, off or none: no limit
    max_duration: Annotated[Seconds | None, Field(gt=0), BeforeValidator(no_limit_when_zero)] = None
    max_outage: Annotated[Seconds, Field(gt=0)] = 300.0  # API or recording host unreachable
    layout: Annotated[str, AfterValidator(layouts.check)] = layouts.DEFAULT
    with_metadata: bool = False
    with_transcript: bool = False
    pending_window: Seconds = 48 * 3600.0
    sync_overlap: Seconds = 2 * 3600.0
    file_mode: Annotated[int, BeforeValidator(parse_file_mode)] = 0o600
    progress: Annotated[Literal["auto", "always", "never"], BeforeValidator(lower)] = "auto"
    status_interval: Annotated[Seconds, Field(gt=0)] = 30.0  # status lines when not on a terminal
    log_format: Annotated[Literal["text", "json"], BeforeValidator(lower)] = "text"
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(upper)] = (
        "INFO"
    )
    log_file: UserPath | None = None  # log records appended here (reopened after logrotate)
    metrics_file: UserPath | None = None
    keep_run_reports: Annotated[int, Field(ge=1)] = 100
    # Why the token file could not be read: said by `require_token`, so that it stops only
    # the commands that need the token (status, verify, manifest, run --dry-run do not).
    _token_problem: UsageError | None = PrivateAttr(default=None)
    # Where each setting's value came from (`config show`, and a rejected token's message).
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def token_source(self) -> str:
        """Which of the token's four sources gave it: OSVI_API_TOKEN, the file
        OSVI_API_TOKEN_FILE names, $CREDENTIALS_DIRECTORY/osvi-api-token, the config file."""
        return self._sources.get("api_token", "nowhere: no token")

    def source_of(self, name: str) -> str:
        if name == "api_token" and self._token_problem is not None:  # it wins, and fails
            return f"unusable: {self._token_problem}"
        return self._sources.get(name, "default")

    @field_validator("base_url")
    @classmethod
    def _token_stays_encrypted(cls, url: str, info: ValidationInfo) -> str:
        # The token travels to base_url in a header: plain http only where it cannot be sniffed.
        parts = urlsplit(url)
        insecure = parts.scheme == "http" and not is_loopback(parts.hostname or "")
        if insecure and not info.data.get("allow_insecure_urls", False):
            raise ValueError(
                f"{url!r} would send the token unencrypted: use https "
                "(plain http only to a loopback host, or with allow_insecure_urls)"
            )
        return url

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The stock env source reads os.environ; ours reads the mapping given to load_settings.
        # No dotenv, no secrets dir. Outside load_settings: init kwargs and defaults only.
        loading = _LOADING.get()
        if loading is None:
            return (init_settings,)
        # Values already read, keyed by field name: what InitSettingsSource takes (the stock
        # TOML source is one too).
        env, toml = (InitSettingsSource(settings_cls, dict(values)) for values in loading)
        return (init_settings, env, toml)

    def token_value(self) -> str | None:
        return None if self.api_token is None else self.api_token.get_secret_value()

    def redacted(self) -> dict[str, Any]:
        """Every setting as JSON-safe values, the token masked: for run reports."""
        data = self.model_dump(mode="json")
        data["api_token"] = None if self.api_token is None else "***"
        data["file_mode"] = f"0o{self.file_mode:o}"
        data["out_dir"] = None if self.out_dir is None else str(self.out_dir)
        return data

    @property
    def archive(self) -> Path | StoreUrl:
        """out_dir, which every command on an archive needs: a UsageError (exit 2) naming
        where to give it when none was."""
        if self.out_dir is None:
            raise UsageError(
                "no archive given: name its folder (or an s3://, gs:// or az:// URL) with --out, "
                "OSVI_OUT_DIR or out_dir in the config file (there is no default: recordings "
                "never land in the current folder by mistake)"
            )
        return self.out_dir

    @property
    def in_store(self) -> bool:
        """Whether the archive is an object store's (out_dir an s3://, gs:// or az:// URL)."""
        return isinstance(self.out_dir, StoreUrl)

    @property
    def folder(self) -> Path:
        """out_dir as a folder: for the commands that work on a local archive only."""
        archive = self.archive
        if isinstance(archive, StoreUrl):
            raise UsageError(f"this command works on a local archive folder, not {archive}")
        return archive


def choose_config_file(config_path: str | None, environ: Mapping[str, str]) -> Path | None:
    """The config file in use: `--config`, else `OSVI_CONFIG`, else the XDG one if it exists
    (tokenfile.py)."""
    chosen = _chosen_config(config_path, environ)
    return None if chosen is None else chosen[0]


def _chosen_config(config_path: str | None, environ: Mapping[str, str]) -> tuple[Path, str] | None:
    if config_path is not None:
        return Path(config_path), "--config"
    from_env = environ.get(f"{ENV_PREFIX}CONFIG", "")
    if from_env:
        return Path(from_env), f"{ENV_PREFIX}CONFIG"
    default = default_config(environ)
    return (default, "the default location") if default else None


def _read_config(path: Path, given_by: str) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"config file {path} (from {given_by}) cannot be read: {reason}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    _reject_unknown_keys(data, path)
    return _anchor_paths(data, path.parent)


def _reject_unknown_keys(data: Mapping[str, Any], path: Path) -> None:
    problems = []
    for key in data:
        if key not in Settings.model_fields:
            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown key {key!r} in {path}{hint}")
    if problems:
        raise UsageError("\n".join(problems))


def _anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    # A relative path in the file means relative to the file, not to wherever cron starts us.
    for key in _PATH_KEYS:
        if isinstance(data.get(key), str) and not is_store_url(data[key]):
            data[key] = folder / Path(data[key]).expanduser()
    return data


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    # Exact upper-case names; an empty variable counts as unset (cron files often say `X=`).
    names = {field: f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
    return {field: environ[name] for field, name in names.items() if environ.get(name)}


def _check_flags(flags: Mapping[str, Any]) -> None:
    if "api_token" in flags:
        raise ValueError("api_token is never a flag: it would leak into ps and shell history")
    unknown = set(flags) - set(FLAG_NAMES)
    if unknown:
        raise ValueError(f"not settings flags: {sorted(unknown)}")


def _describe(
    error: Mapping[str, Any],
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config: Path | None,
    token_from: str | None = None,
) -> str:
    key = str(error["loc"][0]) if error["loc"] else "settings"
    if key == "api_token" and token_from:
        where = f"from {token_from}"
    elif key in flags:
        where = f"from {FLAG_NAMES[key]}"
    elif key in env:
        where = f"from {ENV_PREFIX}{key.upper()}"
    else:
        where = f"in {config}"
    message = _USERINFO.sub(r"\1***@", str(error["msg"]).removeprefix("Value error, "))
    given = error["input"]
    if isinstance(given, str) and _LOOKS_LIKE_URL.match(given):
        given = shown_url(given)  # a query (a presigned URL's signature) is never echoed
    shown = _USERINFO.sub(r"\1***@", repr(given))
    if key != "api_token" and shown not in message:
        message += f" (got {shown:.60})"
    return f"invalid {key} {where}: {message}"


# The user:password@ of a URL, shown as ***@ in messages (credentials a user put in one).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_LOOKS_LIKE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")


def load_settings(
    flags: Mapping[str, Any], *, config_path: str | None, environ: Mapping[str, str]
) -> Settings:
    """Settings from the flags given (field name -> value), `environ` and the config file."""
    _check_flags(flags)
    chosen = _chosen_config(config_path, environ)
    toml = {} if chosen is None else _read_config(*chosen)
    env = _env_values(environ)
    token_from = problem = None
    if "api_token" not in env and (found := token_file(environ)) is not None:
        try:
            env["api_token"] = read_token_file(*found)
        except UsageError as exc:
            problem = exc
        token_from = f"the token file {found[0]} ({found[1]})"
    reset = _LOADING.set((env, toml))
    try:
        settings = Settings(**flags)
        settings._token_problem = problem
        config = None if chosen is None else chosen[0]
        settings._sources = _sources(flags, env, toml, config, token_from)
        return settings
    except ValidationError as exc:
        config = None if chosen is None else chosen[0]
        lines = [_describe(error, flags, env, config, token_from) for error in exc.errors()]
        # `from None`: the pydantic error would carry the raw inputs, the token among them.
        raise UsageError("\n".join(lines)) from None
    finally:
        _LOADING.reset(reset)


def _sources(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    toml: Mapping[str, Any],
    config: Path | None,
    token_from: str | None,
) -> dict[str, str]:
    """Where each given setting came from, by precedence (flag > environment > config file);
    a setting absent here has its default."""
    found: dict[str, str] = {}
    for name in Settings.model_fields:
        if name in flags:
            found[name] = f"the flag {FLAG_NAMES[name]}"
        elif name == "api_token" and token_from is not None and name in env:
            found[name] = token_from
        elif name in env:
            found[name] = f"the environment ({ENV_PREFIX}{name.upper()})"
        elif name in toml:
            found[name] = f"the config file {config}"
    return found


def require_token(settings: Settings) -> str:
    """The token, for a command that needs it; else a UsageError saying why there is none
    (a token file named that cannot be read wins over a token from the config file)."""
    if settings._token_problem is not None:
        raise UsageError(str(settings._token_problem))
    token = settings.token_value()
    if token is None:
        raise UsageError(
            "no API token: set OSVI_API_TOKEN, or OSVI_API_TOKEN_FILE to a file holding it, "
            "or LoadCredential=osvi-api-token:... (systemd), or api_token in the config file "
            "(never on the command line)"
        )
    return token
