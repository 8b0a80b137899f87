"""Where the token and the config file come from besides flags and OSVI_* variables.

The token, in this order: `OSVI_API_TOKEN`; the file `OSVI_API_TOKEN_FILE` names; systemd's
credential `$CREDENTIALS_DIRECTORY/osvi-api-token` (a unit's `LoadCredential=osvi-api-token:
/etc/osvi-archiver/token`: no shell wrapper, the file readable by root only); `api_token` in
the config file. A token file holds the token alone: its line break is cut, and a file that
others can read draws the warning a config file does.

The config file: `--config`, `OSVI_CONFIG`, else `$XDG_CONFIG_HOME/osvi-archiver/config.toml`
(`~/.config/osvi-archiver/config.toml`) when it exists.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

from archiver.errors import UsageError

TOKEN_FILE_VAR = "OSVI_API_TOKEN_FILE"  # noqa: S105 (a variable's name, not a secret)
CREDENTIAL_NAME = "osvi-api-token"
MAX_TOKEN_FILE = 4096  # a token is 16 characters; a file this big is not a token file


def token_file(environ: Mapping[str, str]) -> tuple[Path, str] | None:
    """The token file in use and what named it, or None."""
    named = environ.get(TOKEN_FILE_VAR, "")
    if named:
        return Path(named).expanduser(), TOKEN_FILE_VAR
    folder = environ.get("CREDENTIALS_DIRECTORY", "")
    if folder and (Path(folder) / CREDENTIAL_NAME).is_file():
        return Path(folder) / CREDENTIAL_NAME, "$CREDENTIALS_DIRECTORY"
    return None


def read_token_file(path: Path, given_by: str) -> str:
    """The token a file holds (the UTF-8 text, stripped), or a UsageError naming the file."""
    try:
        # O_NONBLOCK: a FIFO (or /dev/stdin) named here must not hang the command.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"token file {path} (from {given_by}) is not a regular file")
            data = os.read(fd, MAX_TOKEN_FILE + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"token file {path} (from {given_by}) cannot be read: {reason}") from None
    if len(data) > MAX_TOKEN_FILE:
        raise UsageError(f"token file {path} (from {given_by}) is too large to be a token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"token file {path} (from {given_by}) is not UTF-8 text") from None
    if not token:
        raise UsageError(f"token file {path} (from {given_by}) is empty: put the token in it")
    return token


def token_file_warnings(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OSVI_API_TOKEN"):
        return []  # the variable wins: the file is not read
    found = token_file(environ)
    if found is None:
        return []
    path = found[0]
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return []
    if not mode & 0o066:
        return []
    return [
        f"token file {path} has mode {mode:#o}, so others can read or change it: run "
        f"`chmod 600 {path}`"
    ]


def default_config(environ: Mapping[str, str]) -> Path | None:
    """`$XDG_CONFIG_HOME/osvi-archiver/config.toml` (else under `$HOME/.config`) if it
    exists; a relative XDG_CONFIG_HOME is ignored, as the specification says."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not base or not Path(base).is_absolute():
        home = environ.get("HOME", "")
        if not home:
            return None
        base = str(Path(home) / ".config")
    path = Path(base) / "osvi-archiver" / "config.toml"
    return path if path.is_file() else None


def config_file_warnings(path: Path) -> list[str]:
    """A warning when the file holds the token and others can read it (or rewrite base_url)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        holds_token = "api_token" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    if not holds_token or not mode & 0o066:
        return []
    return [
        f"config file {path} holds api_token but its mode is {mode:#o}, so others can read "
        f"or change it: run `chmod 600 {path}`"
    ]
