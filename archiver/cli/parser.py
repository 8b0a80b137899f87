"""The command line's options: one parser, every option with its default in --help.

Flags default to "not given" (argparse.SUPPRESS), so only what the user typed reaches the
settings, as the highest-precedence source (§3).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from archiver import __version__
from archiver.cli.flags import RUN_SETTINGS, STORE_READ_SETTINGS, add_settings, arrange_help
from archiver.fake import options as fake_options
from archiver.osvi.times import TIME_HELP

# argparse as a cron line needs it: no abbreviations, a suggestion for a mistyped option,
# and a clear word for an option put before its command.
#
# - No abbreviated options (`allow_abbrev=False`): `--concurren 4` working today would break the
# day a `--concurrency-*` option is added, in a crontab nobody reads.
# - A mistyped option gets the closest real one of that command ("did you mean --out?"), as the
# config file's keys already do.
# - An option of a command put before it (`osvi-archiver --out x run`) is named as such, not
# answered with "invalid choice: 'x'".

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

# What other tools call our options (rclone, curl, wget, make): suggested before any
# resemblance of spelling, which misleads (`--retries` is not `--retry-failed`). None: the
# tool has no such thing, and no suggestion is better than a wrong one.
OTHER_TOOLS_OPTIONS: dict[str, str | None] = {
    "--transfers": "--concurrency", "--checkers": "--concurrency", "--jobs": "--concurrency",
    "--parallel": "--concurrency", "--workers": "--concurrency", "--threads": "--concurrency",
    "--retries": "--max-attempts", "--retry": "--max-attempts", "--tries": "--max-attempts",
    "--low-level-retries": "--max-attempts", "--stats": "--status-interval",
    "-P": "--progress always", "--progress-bar": "--progress always",
    "--max-age": "--since", "--min-age": "--until", "--output": "--out", "--out-dir": "--out",
    "--output-dir": "--out", "--dest": "--out", "--dryrun": "--dry-run",
    "--timeout": "--read-timeout", "--contimeout": "--connect-timeout",
    "--limit-rate": "--bwlimit", "--max-filesize": "--max-recording-size",
    "--include": None, "--exclude": None, "--filter": None,
}  # fmt: skip
OTHER_TOOLS_COMMANDS = {
    "backup": "run", "download": "run", "fetch": "run", "get": "run", "copy": "run",
    "ls": "list", "lsf": "list", "calls": "list", "reconcile": "check", "validate": "verify",
    "export": "manifest", "info": "status", "stats": "status",
}  # fmt: skip


def suggest_option(flag: str, known: Sequence[str]) -> str | None:
    """What a mistyped or foreign option probably meant among `known`: another tool's name
    for it first, then the one option it starts (`--conc`), then a close spelling."""
    if flag in OTHER_TOOLS_OPTIONS:
        meant = OTHER_TOOLS_OPTIONS[flag]
        return meant if meant is not None and meant.split()[0] in known else None
    longs = [k for k in known if k.startswith("--")]
    if len(flag) >= 4:
        started = [k for k in longs if k.startswith(flag)]
        if len(started) == 1:
            return started[0]
    close = difflib.get_close_matches(flag, longs, n=1, cutoff=0.8)
    return close[0] if close else None


def suggest_command(word: str, commands: Sequence[str]) -> str | None:
    if word in OTHER_TOOLS_COMMANDS:
        return OTHER_TOOLS_COMMANDS[word]
    close = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.6)
    return close[0] if close else None


_json_usage = False  # the command line (or OSVI_LOG_FORMAT) asks for JSON logs


def _asks_json(given: Sequence[str]) -> bool:
    for i, word in enumerate(given):
        if word == "--log-format=json" or (
            word == "--log-format" and i + 1 < len(given) and given[i + 1] == "json"
        ):
            return True
    return os.environ.get("OSVI_LOG_FORMAT", "").strip().lower() == "json"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without abbreviations, whose errors suggest what was meant."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        global _json_usage
        given = list(sys.argv[1:] if args is None else args)
        _json_usage = _asks_json(given)
        self._options_before_command(given)
        self._unknown_command(given)
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

    def error(self, message: str) -> NoReturn:
        """A usage error: one line and where help is, not the usage block (a cron mail, a
        JSON log: the line is what matters); under JSON logs a `fatal` JSON event. Exit 2."""
        if _json_usage:
            from archiver.monitoring.logs import json_fatal

            json_fatal(f"{self.prog}: {message}", 2)
        else:
            sys.stderr.write(f"{self.prog}: error: {message}\nsee '{self.prog} --help'\n")
        sys.exit(2)

    def _unknown_command(self, given: list[str]) -> None:
        """A mistyped command word (`rn`), or another tool's (`backup`): what was meant."""
        commands = self._commands()
        if not commands:
            return
        skip_value = False
        for token in given:
            if skip_value:
                skip_value = False
                continue
            if token.startswith("-"):
                action = self._option_string_actions.get(token)
                skip_value = action is not None and action.nargs is None and not isinstance(
                    action, (argparse._StoreConstAction, argparse._StoreTrueAction,
                             argparse._VersionAction, argparse._HelpAction, argparse._CountAction)
                )  # fmt: skip
                continue
            if token in commands:
                return
            meant = suggest_command(token, sorted(commands))
            hint = f" (did you mean {meant}?)" if meant else ""
            self.error(f"no command {token!r}{hint}; the commands: {', '.join(commands)}")
        return

    def _options_before_command(self, given: list[str]) -> None:
        """An option of a command, given before any command word."""
        commands = self._commands()
        if not commands:
            return
        mine = set(self._option_string_actions)
        for token in given:
            if token in commands or not token.startswith("-") or token == END_OF_OPTIONS:
                return
            if not token.startswith("--"):  # a short option: its own (-v), or a command's (-o)
                if token not in mine and any(
                    token in sub._option_string_actions for sub in commands.values()
                ):
                    owner = next(n for n, sub in commands.items()
                                 if token in sub._option_string_actions)  # fmt: skip
                    self.error(
                        f"{token} is an option of the command, not of osvi-archiver itself: "
                        f"put it after the command (osvi-archiver {owner} {token} ...)"
                    )
                if token not in mine:
                    return  # combined short options (-vq): argparse's to read
                continue
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
            close = suggest_option(flag, sorted(every | mine))
            hint = f" (did you mean {close}, after the command?)" if close else ""
            self.error(f"unrecognized option {flag} before the command{hint}")

    def _unknown(self, extras: list[str], parser: argparse.ArgumentParser) -> NoReturn:
        known = list(parser._option_string_actions)
        others = {name: sub for name, sub in self._commands().items() if sub is not parser}
        hints = []
        after_flag = False
        for token in extras:
            if after_flag and not token.startswith("-"):
                after_flag = False
                continue  # the value of the unknown option just named
            after_flag = token.startswith("-") and "=" not in token
            flag = token.split("=", 1)[0]
            owners = [name for name, sub in others.items() if flag in sub._option_string_actions]
            close = suggest_option(flag, known) if flag.startswith("-") and not owners else None
            if owners and flag.startswith("-"):  # a real option, of other commands: say so
                hints.append(f"{flag} (an option of {', '.join(owners)}, not of this command)")
            elif close:
                hints.append(f"{flag} (did you mean {close}?)")
            else:
                hints.append(token)
        parser.error(f"unrecognized arguments: {' '.join(hints)}")


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Options accepted both before and after the subcommand."""
    s = argparse.SUPPRESS
    parser.add_argument(
        "--config",
        default=s,
        metavar="PATH",
        help="TOML config file (default: $OSVI_CONFIG, else "
        "$XDG_CONFIG_HOME/osvi-archiver/config.toml when it exists)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="DEBUG",
        default=s,
        help="show every retry and more",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const="ERROR",
        default=s,
        help="show errors only",
    )
    add_settings(parser, ("log_format", "log_file"))


def _add_run_options(run: argparse.ArgumentParser) -> None:
    add_settings(run, RUN_SETTINGS)
    add = run.add_argument
    add(
        "-n",
        "--dry-run",
        action="store_true",
        help="say what would be downloaded or skipped and why, on stdout; asks no recording "
        "URL, downloads nothing, writes nothing (sync still lists calls: it needs the token)",
    )
    add(
        "--force",
        action="store_true",
        help="download again calls already archived (and ask again those not available)",
    )
    add(
        "--retry-not-available",
        dest="retry_not_available",
        action="store_true",
        help="ask the API again for calls this archive holds as not_available (final "
        "otherwise: a rerun does not ask); with --retry-failed, take them from the archive too",
    )
    add(
        "--shard",
        default=None,
        metavar="K/N",
        help="only the calls whose shard is K of N: int.from_bytes(sha256(lower-case call id)"
        "[:8], 'big') %% N == K, stable across machines and versions; auto/N takes K from "
        "JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX",
    )


def _add_input_options(run: argparse.ArgumentParser) -> None:
    add = run.add_argument
    add(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="CSV (column call_id, else id, else --id-column) or plain-text files of call ids; "
        "'-' or nothing reads stdin",
    )
    add(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="take no input: retry only the calls this archive lists as failed or pending",
    )
    add(
        "--id-column",
        dest="id_column",
        default=None,
        metavar="COLUMN",
        help="CSV column holding the call id",
    )


def _add_listing_options(parser: argparse.ArgumentParser, *, default_status: str) -> None:
    add = parser.add_argument
    add(
        "--status",
        action="append",
        default=None,
        metavar="STATUS",
        help="picked, not_picked, failed, busy, voicemail, in_progress, or any (every "
        f"status); repeat or comma-separate (default: {default_status})",
    )
    add("--agent", default=None, metavar="UUID", help="only this agent's calls")
    add("--campaign", type=int, default=None, metavar="ID", help="only this campaign")
    add(
        "--campaign-upload",
        dest="campaign_upload",
        type=int,
        default=None,
        metavar="ID",
        help="only this campaign upload",
    )
    add("--phone", default=None, help="phone number, partial match")
    add("--call-type", dest="call_type", choices=("inbound", "outbound"), default=None)
    add(
        "--since",
        default=None,
        metavar="TIME",
        help=f"start of the window on call_picked_at: {TIME_HELP}",
    )
    add("--until", default=None, metavar="TIME", help="end of the window (default: now)")


TOP_EPILOG = f"""the API token: OSVI_API_TOKEN, else the file OSVI_API_TOKEN_FILE names, else
  $CREDENTIALS_DIRECTORY/osvi-api-token (systemd's LoadCredential=), else api_token in the
  config file; never a flag.
the config file: --config, else $OSVI_CONFIG, else $XDG_CONFIG_HOME/osvi-archiver/config.toml
  (~/.config/osvi-archiver/config.toml) when it exists.
every setting: its flag > its OSVI_* environment variable (each option's help names it) >
  the config file > the default.

{EXIT_CODES}"""


class _FakeHelp(argparse.ArgumentDefaultsHelpFormatter):
    """fake-server's help: each default shown, but none where the help says it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="osvi-archiver",
        description="Keep your own verified copy of every OSVI AI call recording.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="archive the calls named in CSV/text files or on stdin",
        description="Archive the recordings of the calls named in INPUT files or on stdin.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(run)
    _add_input_options(run)
    _add_run_options(run)
    sync = commands.add_parser(
        "sync",
        help="list calls through the API and archive them, continuing from the last sync",
        description="List calls through GET /v1/calls and archive them as pages arrive. A plain "
        "sync covers [watermark - overlap, now]: the watermark is the call_picked_at up to which "
        "every listed call reached an outcome, kept in the archive. The first sync needs "
        "--since. Pending calls (404 but younger than --pending-window) are tried again first "
        "by every run and sync, failed ones by every sync, so the watermark can move past them.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(sync)
    _add_run_options(sync)
    _add_listing_options(sync, default_status="picked")
    add_settings(sync, ("sync_overlap",))
    listing = commands.add_parser(
        "list",
        help="print the listed calls as CSV or JSON Lines on stdout",
        description="Print the calls GET /v1/calls lists, every page, de-duplicated, streamed: "
        "CSV with the call fields as header (feeds `osvi-archiver run -`) or JSON Lines.",
    )
    _add_common(listing)
    add_settings(listing, ("base_url", "max_requests_per_second"))
    _add_listing_options(listing, default_status="picked")
    listing.add_argument(
        "--format", choices=("csv", "jsonl"), default="csv", help="output format (default: csv)"
    )
    verify = commands.add_parser(
        "verify",
        help="re-hash every archived file against the archive's record",
        description="Re-read every archived recording and check its size and sha256 against the "
        "archive's state (what manifest.json is rendered from); list missing, truncated, "
        "modified and unexpected files. Exit 0 if all is well, 1 if anything is wrong, "
        "4 if the archive's state cannot be read. Takes no lock and writes nothing. In a "
        "bucket, the listing and each object's size and sha256 metadata are checked; --deep "
        "downloads and hashes every object too.",
    )
    _add_common(verify)
    add_settings(verify, ("out_dir", *STORE_READ_SETTINGS))
    verify.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    verify.add_argument(
        "--deep",
        action="store_true",
        help="in a bucket: download and hash every object (a folder's files are always read)",
    )
    manifest = commands.add_parser(
        "manifest",
        help="print the whole manifest as one JSON, JSON Lines or CSV document",
        description="Stream the archive's manifest (the index manifest.json and its parts) "
        "to stdout as one document: json has the shape of a schema-1 manifest.json, with "
        "`calls` in the order they were first recorded; jsonl is one call a line; csv a header "
        "and one call a line. Reads files only: no lock, no state, nothing written. Exit 4 "
        "when there is no readable manifest.",
    )
    _add_common(manifest)
    add_settings(manifest, ("out_dir", *STORE_READ_SETTINGS))
    manifest.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="that shard's manifest (default: the whole archive's, or, where only shards "
        "archived, every shard's one after the other)",
    )
    manifest.add_argument(
        "--format",
        choices=("json", "jsonl", "csv"),
        default="json",
        help="output format (default: json)",
    )
    check = commands.add_parser(
        "check",
        help="reconcile the archive with the API's listing: what it missed, and why",
        description="Walk GET /v1/calls over a window exactly as sync does (asking no "
        "recording URL) and hold every listed call against the archive's state, read-only "
        "(no lock: beside a running nightly; a folder or a bucket). Missing: listed calls the "
        "archive does not hold as archived, pending or not available, with why (never seen, "
        "failed and its kind). Unlisted: archived calls of the window the listing does not "
        "show (reported, not an error). A call picked after the sync watermark of these "
        "filters less than 36 h ago is the next sync's: shown, not missing. The window: "
        "--since (default 7d) to --until (default now). `check --ids ... | osvi-archiver run "
        "--out DEST -` archives what is missing.",
        epilog=CHECK_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(check)
    add_settings(check, ("out_dir", "base_url", "max_requests_per_second", "max_attempts",
                         "sync_overlap", "metrics_file", *STORE_READ_SETTINGS))  # fmt: skip
    _add_listing_options(check, default_status="picked")
    shown = check.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    shown.add_argument(
        "--ids",
        action="store_true",
        help="print only the missing call ids, one a line (feeds `osvi-archiver run -`)",
    )
    check.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="only that shard's calls and state (default: every state of the archive)",
    )
    demo = commands.add_parser(
        "demo",
        help="run the whole product against the embedded fake OSVI service",
        description="Start the embedded fake OSVI service on loopback (faults on) and archive "
        "its calls into ./demo-archive. No account needed.",
    )
    _add_common(demo)
    fake = commands.add_parser(
        "fake-server",
        help="run the embedded fake OSVI service in the foreground",
        description="Run the embedded fake OSVI service (API and recording host) on loopback "
        "until SIGINT or SIGTERM. For trials and for your own tests; never a real OSVI host.",
        formatter_class=_FakeHelp,
    )
    fake_options.add_arguments(fake)
    status = commands.add_parser(
        "status",
        help="what the archive holds and how its last run went, read cheaply",
        description="Counts per status (as of the last manifest write), the sync watermark, "
        "the last run (when, exit code, duration), the last success, and the pending calls "
        "with when each was last tried; every shard's state in its own block. Reads the "
        "state only, as any SQLite reader (which may open its -wal/-shm files): no lock, no "
        "file hashed. Exit 0, or 4 when the folder or its state cannot be read.",
    )
    _add_common(status)
    add_settings(status, ("out_dir", *STORE_READ_SETTINGS))
    status.add_argument("--json", action="store_true", help="print it as JSON on stdout")
    config = commands.add_parser(
        "config",
        help="show the effective settings and where each came from",
        description="`osvi-archiver config show`: every setting a run would use with these "
        "flags, environment and config file, and where its value came from (a flag, an "
        "OSVI_* variable, the config file, the default). The token is shown as *** with "
        "which of its four sources gave it.",
    )
    config_actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = config_actions.add_parser("show", help="the effective settings")
    _add_common(show)
    add_settings(show, (*RUN_SETTINGS, "sync_overlap"))
    show.add_argument("--json", action="store_true", help="as one JSON object on stdout")
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script for bash or zsh",
        description="Print the completion script of every command and option, generated from "
        "this parser (shtab): `osvi-archiver completion bash > "
        "/etc/bash_completion.d/osvi-archiver`, or for zsh into a folder of your $fpath as "
        "_osvi-archiver.",
    )
    completion.add_argument("shell", choices=("bash", "zsh"))
    for name, command in commands.choices.items():
        if name not in ("fake-server", "completion", "config"):  # the fake's options: its own
            arrange_help(command)
    arrange_help(show)
    return parser


def completion_command(args: argparse.Namespace) -> int:
    """The shell's completion script, generated from the parser itself (shtab): it can
    never name an option the tool does not have."""
    import shtab

    parser = build_parser()
    _complete_paths(parser, {**dict.fromkeys(_FILE_DESTS, shtab.FILE),
                             **dict.fromkeys(_FOLDER_DESTS, shtab.DIRECTORY)})  # fmt: skip
    print(shtab.complete(parser, shell=args.shell))
    return 0


# What completes as a file or a folder name (shtab's `complete` attribute on the action).
_FILE_DESTS = ("inputs", "config", "metrics_file", "log_file")
_FOLDER_DESTS = ("out_dir", "state_dir")


def _complete_paths(parser: argparse.ArgumentParser, kinds: dict[str, object]) -> None:
    """Mark every action of `parser` and its commands whose value is a path."""
    for action in parser._actions:
        if action.dest in kinds:
            action.complete = kinds[action.dest]  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _complete_paths(command, kinds)
