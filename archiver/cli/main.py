"""The `osvi-archiver` command line: argv -> the command (cli/commands.py) -> exit code.

Flags default to "not given" (argparse.SUPPRESS), so only what the user typed reaches the
settings as the highest-precedence source, above env, the config file and defaults (§3).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

from archiver.cli import commands
from archiver.cli.parser import build_parser, completion_command
from archiver.errors import InternalError, RunError
from archiver.monitoring.logs import (
    forget_format,
    json_fatal,
    json_mode,
    set_context,
    write_log_file,
)
from archiver.redaction import scrub

log = logging.getLogger("archiver.cli.main")
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": commands.run_command,
    "sync": commands.sync_command,
    "list": commands.list_command,
    "verify": commands.verify_command,
    "manifest": commands.manifest_command,
    "demo": commands.demo_command,
    "config": commands.config_command,
    "fake-server": commands.fake_server_command,
    "completion": completion_command,
    "status": commands.status_command,
    "check": commands.check_command,
}


def _wants_json(args: argparse.Namespace) -> bool:
    """JSON logs asked for by flag or environment, read without the settings (which may be
    what failed)."""
    value = getattr(args, "log_format", None) or os.environ.get("OSVI_LOG_FORMAT", "")
    return str(value).strip().lower() == "json"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    forget_format()
    set_context(command=args.command)
    try:
        return COMMANDS[args.command](args)
    except RunError as exc:
        return _fatal(args, exc)
    except BrokenPipeError:  # `... | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except Exception as exc:  # a bug outside any run: one clear line, exit 70, not a traceback
        log.debug("traceback of the internal error", exc_info=exc)
        return _fatal(args, InternalError.of(exc))


def _fatal(args: argparse.Namespace, exc: RunError) -> int:
    """The error that ended the command, on stderr: a `fatal` JSON event with JSON logs."""
    if json_mode() or _wants_json(args):
        json_fatal(str(exc), exc.exit_code)
    else:
        said = f"osvi-archiver: error: {scrub(str(exc), keep_newlines=True)}"
        print(said, file=sys.stderr)
        # --log-file holds the whole story, how it ended too (cron may drop stderr).
        write_log_file(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} ERROR   {said}")
    return exc.exit_code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit meets no broken pipe again."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
