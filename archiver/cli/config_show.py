"""`osvi-archiver config show`: the settings a run would use, each with where its value came
from (a flag, an `OSVI_*` variable, the config file, the default). The token is never shown:
`***`, with which of its four sources gave it, so a wrong one can be found and replaced."""

from __future__ import annotations

import json
from typing import Any

from archiver.config.settings import Settings
from archiver.config.units import (
    duration_text,
    parse_duration,
    parse_file_mode,
    parse_size,
    size_text,
)


def shown(settings: Settings, name: str) -> str:
    """A setting's value as its flag would take it (90m, 4GiB, 0o600), the token masked."""
    value: Any = getattr(settings, name)
    if name == "api_token":
        return "none" if value is None else "***"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    parsers = {getattr(m, "func", None) for m in Settings.model_fields[name].metadata}
    if parse_file_mode in parsers:
        return f"0o{value:o}"
    if parse_size in parsers and isinstance(value, int):
        return size_text(value)
    if isinstance(value, float) and (parse_duration in parsers or name in ("max_duration",)):
        return duration_text(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def rows(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, value, where it came from), in the settings' order."""
    return [
        (name, shown(settings, name), settings.source_of(name)) for name in Settings.model_fields
    ]


def render(settings: Settings, *, as_json: bool) -> str:
    table = rows(settings)
    if as_json:
        return json.dumps(
            {name: {"value": value, "from": source} for name, value, source in table}, indent=2
        )
    width = max(len(name) for name, _, _ in table)
    value_width = min(40, max(len(value) for _, value, _ in table))
    return "\n".join(
        f"{name:<{width}}  {value:<{value_width}}  {source}" for name, value, source in table
    )
