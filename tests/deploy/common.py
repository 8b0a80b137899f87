"""What the deploy tests share: where the deploy files are, the values they must hold, and
readers of their command lines (through the tool's real parser), crontab lines and unit settings.

Plain file reading: no network, no systemd, no cron needed."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from archiver.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRONTAB = DEPLOY / "crontab"
SERVICE = DEPLOY / "osvi-archiver.service"
TIMER = DEPLOY / "osvi-archiver.timer"
ENV_EXAMPLE = DEPLOY / "osvi-archiver.env.example"
KUBERNETES = DEPLOY / "kubernetes-indexed-job.yaml"
ALERTS = DEPLOY / "prometheus-alerts.yaml"
CHECK_SERVICE = DEPLOY / "osvi-archiver-check.service"
CHECK_TIMER = DEPLOY / "osvi-archiver-check.timer"
METRICS_SOURCE = ROOT / "archiver" / "monitoring" / "metrics.py"

PROGRAM = "/usr/local/bin/osvi-archiver"
ARCHIVE = "/srv/osvi-archive"
METRICS = "/var/lib/node_exporter/textfile_collector/osvi_archiver.prom"
CHECK_METRICS = "/var/lib/node_exporter/textfile_collector/osvi_archiver_check.prom"
CREDENTIAL = "osvi-api-token:/etc/osvi-archiver/token"
PLACEHOLDER_TOKEN = "replace-with-your-token"

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Where the shell words of the tool's own command line end: a redirection, a pipe, a list.
SHELL_OPERATOR = re.compile(r"^(\d*[<>&]|\|\|?$|&&$|;$)")
SHELLS = {"sh", "bash", "dash"}


def parse(argv: list[str]) -> argparse.Namespace:
    """The tool's real parser; argparse exits 2 on an unknown flag or a bad value."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"osvi-archiver {shlex.join(argv)} does not parse (exit {exc.code})")


def tool_argv(words: list[str]) -> list[str]:
    """The arguments after the program in a shell command's words, shell wrapping removed:
    `VAR=... [exec] /usr/local/bin/osvi-archiver ARGS... [>>log 2>&1 || ...]`, or the same
    inside `/bin/sh -c '...'`. Also checks the token only ever comes in through the environment.
    """
    if Path(words[0]).name in SHELLS and "-c" in words:
        return tool_argv(shlex.split(words[words.index("-c") + 1]))
    names = [Path(word).name for word in words]
    assert "osvi-archiver" in names, f"no osvi-archiver program in {words}"
    start = names.index("osvi-archiver")
    for i, word in enumerate(words[:start]):
        if "OSVI_API_TOKEN" in word:
            # A prefix assignment of the shell (the program's environment), never an argument
            # of env, sudo or anything else, where it would show in `ps`.
            assert all(ASSIGNMENT.match(w) for w in words[: i + 1]), words
    argv: list[str] = []
    for word in words[start + 1 :]:
        if SHELL_OPERATOR.match(word):
            break
        argv.append(word)
    assert not any("TOKEN" in word.upper() for word in argv), argv
    return argv


def assert_nightly_sync(ns: argparse.Namespace) -> None:
    assert ns.command == "sync"
    assert ns.out_dir == ARCHIVE
    assert not hasattr(ns, "progress")  # not a terminal: status lines, as issue 7 wants
    assert ns.log_format == "json"
    assert ns.metrics_file == METRICS
    # Nightly runs continue from the watermark: an explicit window would re-list the same days.
    assert ns.since is None
    assert ns.until is None


def crontab_jobs() -> list[tuple[list[str], str]]:
    """(the five time fields, the command) of every job line of the crontab."""
    jobs: list[tuple[list[str], str]] = []
    for line in CRONTAB.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ASSIGNMENT.match(stripped):
            continue
        *fields, command = stripped.split(None, 5)
        jobs.append((fields, command))
    return jobs


def service_exec_starts(path: Path = SERVICE) -> tuple[list[str], list[str]]:
    """The non-empty ExecStart= values of a service: (active ones, commented-out ones)."""
    active: list[str] = []
    commented: list[str] = []
    for line in path.read_text().splitlines():
        match = re.match(r"^(#?)\s*ExecStart=(.+)$", line)
        if match:
            # A leading -, @, +, ! or : is a systemd prefix, not part of the path.
            value = match.group(2).strip().lstrip("-@+!:")
            (commented if match.group(1) else active).append(value)
    return active, commented


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every active KEY=value of a unit file (comments skipped), values in order."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;[":
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def commented_commands(path: Path) -> list[str]:
    """Command lines quoted in a file's comments that run the installed program, with
    backslash continuations joined (how the first, hand-run sync is documented)."""
    commands: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            pending = ""
            continue
        text = pending + line.lstrip("#").strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if f"{PROGRAM} sync" in text and "ExecStart=" not in text:
            commands.append(text)
    return commands


def assert_weekly_check(ns: argparse.Namespace) -> None:
    assert ns.command == "check"
    assert ns.out_dir == ARCHIVE
    assert ns.since == "8d"  # a week and a night of overlap
    assert ns.until is None  # up to the sync watermark
    assert ns.log_format == "json"
    # Its own textfile: a file is replaced whole, so sharing the nightly's would erase it.
    assert ns.metrics_file == CHECK_METRICS != METRICS
