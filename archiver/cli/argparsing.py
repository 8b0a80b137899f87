"""argparse as a cron line needs it: no abbreviations, a suggestion for a mistyped option,
and a clear word for an option put before its command.

- No abbreviated options (`allow_abbrev=False`): `--concurren 4` working today would break the
  day a `--concurrency-*` option is added, in a crontab nobody reads.
- A mistyped option gets the closest real one of that command ("did you mean --out?"), as the
  config file's keys already do.
- An option of a command put before it (`osvi-archiver --out x run`) is named as such, not
  answered with "invalid choice: 'x'".
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_CODES = """exit codes:
  0        every call archived, already archived, pending or not available (or nothing to do)
  1        some calls failed after their retries, some input rows (or listed items) were
           invalid, or a window of the API's listing could not be listed (sync, list)
  2        usage or configuration error; nothing was attempted
  3        the API rejected the token
  4        local fatal error: disk full, folder not writable, state unreadable, a bucket
           that refuses
  69       the API or the recording host unreachable for --max-outage, or its TLS certificate
           or the proxy's login refused (a rerun continues)
  70       an internal error outside any one call (a bug)
  75       another run holds this archive
  124      --max-duration reached: stopped cleanly, a rerun continues
  129/130/143  interrupted by SIGHUP / SIGINT / SIGTERM (a rerun continues)"""

CHECK_EXIT_CODES = """exit codes:
  0        nothing missing: every listed call held (archived, pending, not available) or the
           next sync's
  1        calls missing, a window of the listing that could not be listed, or listed items
           without a usable call_id
  2        usage or configuration error
  3        the API rejected the token
  4        the archive or its state cannot be read (a folder that does not exist included)
  69       the API unreachable for max_outage, or its TLS certificate refused
  70       an internal error (a bug)"""


END_OF_OPTIONS = "--"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without abbreviations, whose errors suggest what was meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        given = list(sys.argv[1:] if args is None else args)
        self._options_before_command(given)
        parsed, extras = self.parse_known_args(given, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self._unknown(extras, self._command_parser(command) if command else self)
        return parsed

    def _command_parser(self, name: str) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and name in action.choices:
                chosen: argparse.ArgumentParser = action.choices[name]
                return chosen
        return self

    def _commands(self) -> dict[str, argparse.ArgumentParser]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def _options_before_command(self, given: list[str]) -> None:
        """An option of a command, given before any command word."""
        commands = self._commands()
        if not commands:
            return
        mine = set(self._option_string_actions)
        for token in given:
            if token in commands or not token.startswith("--") or token == END_OF_OPTIONS:
                return  # short options (-vq) and `--` are argparse's to read
            flag = token.split("=", 1)[0]
            if flag in mine:
                continue
            owners = [name for name, sub in commands.items() if flag in sub._option_string_actions]
            if owners:
                self.error(
                    f"{flag} is an option of the command, not of osvi-archiver itself: put it "
                    f"after the command (osvi-archiver {owners[0]} {flag} ...)"
                )
            every = {s for sub in commands.values() for s in sub._option_string_actions}
            close = difflib.get_close_matches(flag, sorted(every | mine), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}, after the command?)" if close else ""
            self.error(f"unrecognized option {flag} before the command{hint}")

    def _unknown(self, extras: list[str], parser: argparse.ArgumentParser) -> NoReturn:
        known = [s for s in parser._option_string_actions if s.startswith("--")]
        hints = []
        for token in extras:
            flag = token.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            if flag.startswith("-") and close:
                hints.append(f"{flag} (did you mean {close[0]}?)")
            else:
                hints.append(token)
        parser.error(f"unrecognized arguments: {' '.join(hints)}")
