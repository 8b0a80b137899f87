"""The crontab (deploy/crontab) and the first runs the deploy files document in comments."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.common import (
    ARCHIVE,
    CRONTAB,
    PROGRAM,
    TIMER,
    assert_nightly_sync,
    assert_weekly_check,
    commented_commands,
    crontab_jobs,
    parse,
    tool_argv,
)

# --- the crontab ------------------------------------------------------------------------------


def test_crontab_runs_the_nightly_sync_at_0230() -> None:
    jobs = crontab_jobs()
    assert len(jobs) == 2, jobs  # the nightly sync, the weekly check
    fields, command = jobs[0]
    assert fields == ["30", "2", "*", "*", "*"]
    # cron turns an unescaped % into a newline, cutting the command short.
    assert re.search(r"(?<!\\)%", command) is None, command
    words = shlex.split(command)
    # The tool reads the token file itself: no $(cat ...) putting it in the environment.
    assert words[0] == "OSVI_API_TOKEN_FILE=$HOME/.config/osvi-archiver/token"
    assert words[1] == PROGRAM
    assert_nightly_sync(parse(tool_argv(words)))
    # stderr (and the summary on it) goes to a log file, appended.
    assert "2>&1" in words
    assert any(word.startswith(">>") for word in words)


def test_crontab_checks_the_archive_every_sunday_after_the_night() -> None:
    fields, command = crontab_jobs()[1]
    assert fields == ["0", "6", "*", "*", "0"]  # Sunday 06:00, after the 02:30 sync
    assert re.search(r"(?<!\\)%", command) is None, command
    words = shlex.split(command)
    assert words[0] == "OSVI_API_TOKEN_FILE=$HOME/.config/osvi-archiver/token"
    assert_weekly_check(parse(tool_argv(words)))
    assert "2>&1" in words
    assert any(word.startswith(">>") and "check.log" in word for word in words)


def test_crontab_explains_exit_codes_mail_and_first_run() -> None:
    text = CRONTAB.read_text()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for code in ("0", "1", "2", "3", "4", "69", "70", "75", "124", "129", "130", "143"):
        assert re.search(rf"^#\s+{code}\s", comments, re.MULTILINE), f"exit code {code}"
    assert re.search(r"^MAILTO=", text, re.MULTILINE)
    assert "--since" in comments


# --- first runs documented in comments --------------------------------------------------------


@pytest.mark.parametrize("path", [CRONTAB, TIMER], ids=lambda p: p.name)
def test_documented_first_sync_parses_with_since(path: Path) -> None:
    commands = commented_commands(path)
    assert commands, f"{path.name} documents no first sync"
    for command in commands:
        ns = parse(tool_argv(shlex.split(command)))
        assert ns.command == "sync"
        assert ns.out_dir == ARCHIVE
        assert ns.since is not None


@pytest.mark.parametrize(
    ("code", "mailed"),
    [(0, False), (75, False), (124, False), (1, True), (3, True), (69, True), (143, True)],
)
def test_cron_mails_only_on_exit_codes_a_person_must_act_on(
    tmp_path: Path, code: int, mailed: bool
) -> None:
    """Each job line, run by sh as cron does, with the tool replaced by a stub exiting
    `code`: it prints (cron mails it) only when a person must act."""
    import subprocess

    stub = tmp_path / "osvi-archiver"
    stub.write_text(f"#!/bin/sh\necho log line\nexit {code}\n")
    stub.chmod(0o755)
    (tmp_path / ".local" / "state" / "osvi-archiver").mkdir(parents=True)
    for _, command in crontab_jobs():
        line = command.replace(PROGRAM, str(stub))
        done = subprocess.run(
            ["sh", "-c", line], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert done.stderr == ""
        if mailed:
            assert done.stdout.startswith("osvi-archiver "), done.stdout
            assert f"exited {code} " in done.stdout
        else:
            assert done.stdout == "", done.stdout
