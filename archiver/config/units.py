"""The values settings take, parsed and shown one way everywhere: durations (`90s`, `15m`,
`48h`), sizes (`64KiB`, `4GiB`), file modes, the API's origin, the token."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# A bare number (seconds), or one or more number-unit pairs as rclone and Go write them:
# `90s`, `15m`, `1h30m`, `2d12h`, `1.5h`, `500ms`.
_DURATION = re.compile(rf"{_NUMBER}|{_NUMBER}(?:ms|[smhdw])(?:\s*{_NUMBER}(?:ms|[smhdw]))*",
                       re.ASCII)  # fmt: skip
_PART = re.compile(rf"({_NUMBER})(ms|[smhdw]|)", re.ASCII)


def parse_duration(text: str | float | int) -> float:
    """Seconds from a number or a string such as `90`, `90s`, `15m`, `1.5h`, `1h30m`, `7d`."""
    found = "" if isinstance(text, bool) else str(text).strip().lower()
    if not found or _DURATION.fullmatch(found) is None:
        raise ValueError(f"{text!r} is not a duration: use seconds or 90s, 15m, 1h30m, 48h, 7d")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(found))
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration: it is too long")
    return seconds


def no_limit_when_zero(value: object) -> object:
    """`--max-duration 0` (or `off`, `none`) is no limit, as rclone reads it: None."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none", ""):
        return None
    if value is not None and not isinstance(value, bool) and parse_duration(value) == 0:  # type: ignore[arg-type]
        return None
    return value


def zero_when_off(value: object) -> object:
    """`--bwlimit off` (or `none`) is no cap, as rclone reads it: 0."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none"):
        return 0
    return value


def parse_file_mode(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0o)?[0-7]+", text := value.strip().lower()):
        mode = int(text.removeprefix("0o"), 8)
    else:
        raise ValueError(f"{value!r} is not an octal file mode such as 0o600, 0600 or 600")
    if not 0 <= mode <= 0o777:
        raise ValueError(f'{value!r} is outside 0..0o777 (in TOML write 0o600 or "600")')
    if mode & 0o600 != 0o600:
        raise ValueError(f"{oct(mode)} must let the owner read and write (0o600 at least)")
    return mode


def check_base_url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"{value!r} must hold no credentials, query or fragment")
    return url.rstrip("/")


def check_endpoint(value: str | None) -> str | None:
    """An object store's endpoint (a local MinIO, moto, Azurite; a provider's regional
    endpoint): an http(s) origin with no credentials in it."""
    if value is None:
        return None
    return check_base_url(value)


def clean_token(value: object) -> object:
    # A blank token (an empty env var or `api_token = ""`) means "not set", not a bad token;
    # the line break a token file ends with (`$(cat file)` keeps none, a config may) is cut.
    if not isinstance(value, str):
        return value
    token = value.strip()
    if token and not all(" " < c < "\x7f" for c in token):
        # It goes into a header: a line break there is refused by aiohttp on every request.
        raise ValueError(
            "the token holds a line break, a space or a character outside printable ASCII "
            "(is the token file more than one line?); the value is not shown"
        )
    return token or None


_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)", re.ASCII)
_SIZE_UNITS = {"": 0, "b": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str | float | int) -> int:
    """Bytes from a number or `512`, `64KiB`, `16M`, `4GiB` (every unit a power of 1024)."""
    match = None if isinstance(text, bool) else _SIZE.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a size: use bytes or 64KiB, 16MiB, 4GiB")
    size = float(match[1]) * 1024 ** _SIZE_UNITS[match[2][:1]]
    if not math.isfinite(size) or size > 2**62:
        raise ValueError(f"{text!r} is too large a size")
    return int(size)


def lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def duration_text(seconds: float) -> str:
    """A duration as the flags take it: `90s`, `15m`, `48h`, `7d` (the largest exact unit)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def size_text(count: int) -> str:
    """A size as the flags take it: `1024`, `64KiB`, `4GiB` (the largest exact unit)."""
    for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if count >= 1024**power and count % 1024**power == 0:
            return f"{count // 1024**power}{unit}"
    return str(count)
