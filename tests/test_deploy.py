"""The deploy examples (deploy/) stay true to the tool: every command line in them parses with the
real argument parser, and no token is ever written into them or passed on a command line.

Plain file reading: no network, no systemd, no cron needed.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from archiver.options import build_parser

DEPLOY = Path(__file__).parent.parent / "deploy"
CRONTAB = DEPLOY / "crontab"
SERVICE = DEPLOY / "osvi-archiver.service"
TIMER = DEPLOY / "osvi-archiver.timer"
ENV_EXAMPLE = DEPLOY / "osvi-archiver.env.example"
KUBERNETES = DEPLOY / "kubernetes-indexed-job.yaml"

PROGRAM = "/usr/local/bin/osvi-archiver"
ARCHIVE = "/srv/osvi-archive"
METRICS = "/var/lib/node_exporter/textfile_collector/osvi_archiver.prom"
PLACEHOLDER_TOKEN = "replace-with-your-token"

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Where the shell words of the tool's own command line end: a redirection, a pipe, a list.
_SHELL_OPERATOR = re.compile(r"^(\d*[<>&]|\|\|?$|&&$|;$)")
_SHELLS = {"sh", "bash", "dash"}


def _parse(argv: list[str]) -> argparse.Namespace:
    """The tool's real parser; argparse exits 2 on an unknown flag or a bad value."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"osvi-archiver {shlex.join(argv)} does not parse (exit {exc.code})")


def _tool_argv(words: list[str]) -> list[str]:
    """The arguments after the program in a shell command's words, shell wrapping removed:
    `VAR=... [exec] /usr/local/bin/osvi-archiver ARGS... [>>log 2>&1 || ...]`, or the same
    inside `/bin/sh -c '...'`. Also checks the token only ever comes in through the environment.
    """
    if Path(words[0]).name in _SHELLS and "-c" in words:
        return _tool_argv(shlex.split(words[words.index("-c") + 1]))
    names = [Path(word).name for word in words]
    assert "osvi-archiver" in names, f"no osvi-archiver program in {words}"
    start = names.index("osvi-archiver")
    for i, word in enumerate(words[:start]):
        if "OSVI_API_TOKEN" in word:
            # A prefix assignment of the shell (the program's environment), never an argument
            # of env, sudo or anything else, where it would show in `ps`.
            assert all(_ASSIGNMENT.match(w) for w in words[: i + 1]), words
    argv: list[str] = []
    for word in words[start + 1 :]:
        if _SHELL_OPERATOR.match(word):
            break
        argv.append(word)
    assert not any("TOKEN" in word.upper() for word in argv), argv
    return argv


def _assert_nightly_sync(ns: argparse.Namespace) -> None:
    assert ns.command == "sync"
    assert ns.out_dir == ARCHIVE
    assert not hasattr(ns, "progress")  # not a terminal: status lines, as issue 7 wants
    assert ns.log_format == "json"
    assert ns.metrics_file == METRICS
    # Nightly runs continue from the watermark: an explicit window would re-list the same days.
    assert ns.since is None
    assert ns.until is None


def _crontab_jobs() -> list[tuple[list[str], str]]:
    """(the five time fields, the command) of every job line of the crontab."""
    jobs: list[tuple[list[str], str]] = []
    for line in CRONTAB.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _ASSIGNMENT.match(stripped):
            continue
        *fields, command = stripped.split(None, 5)
        jobs.append((fields, command))
    return jobs


def _service_exec_starts() -> tuple[list[str], list[str]]:
    """The non-empty ExecStart= values of the service: (active ones, commented-out ones)."""
    active: list[str] = []
    commented: list[str] = []
    for line in SERVICE.read_text().splitlines():
        match = re.match(r"^(#?)\s*ExecStart=(.+)$", line)
        if match:
            # A leading -, @, +, ! or : is a systemd prefix, not part of the path.
            value = match.group(2).strip().lstrip("-@+!:")
            (commented if match.group(1) else active).append(value)
    return active, commented


def _unit_settings(path: Path) -> dict[str, list[str]]:
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


def _commented_commands(path: Path) -> list[str]:
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


# --- the timer --------------------------------------------------------------------------------


def test_timer_runs_nightly_and_catches_up_missed_nights() -> None:
    timer = _unit_settings(TIMER)
    assert timer["OnCalendar"] == ["*-*-* 02:30:00"]
    assert timer["Persistent"] == ["true"]
    assert timer["Unit"] == ["osvi-archiver.service"]
    assert timer["WantedBy"] == ["timers.target"]
    assert "RandomizedDelaySec" in timer


def test_timer_documents_install_commands() -> None:
    text = TIMER.read_text()
    for command in (
        "systemctl daemon-reload",
        "systemctl enable --now osvi-archiver.timer",
        "systemctl list-timers",
        "install -m 0600",
    ):
        assert command in text, command


# --- the service ------------------------------------------------------------------------------


def test_service_is_a_sandboxed_oneshot() -> None:
    service = _unit_settings(SERVICE)
    assert service["Type"] == ["oneshot"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == [f"{ARCHIVE} {Path(METRICS).parent}"]
    assert service["User"] == ["osvi-archiver"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["UMask"] == ["0077"]
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "MemoryDenyWriteExecute"):
        assert service[key] == ["yes"], key
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["TimeoutStopSec"] == ["30"]


def test_service_failed_calls_fail_the_unit() -> None:
    success = _unit_settings(SERVICE).get("SuccessExitStatus", [])
    codes = {code for value in success for code in value.split()}
    assert codes, "SuccessExitStatus= is expected (75, 143)"
    # 1 (some calls failed) must show as a failed unit, and so must 2, 3, 4, 69 and 70.
    assert not codes & {"1", "2", "3", "4", "69", "70"}, codes


def test_service_takes_the_token_from_a_file_never_a_literal() -> None:
    service = _unit_settings(SERVICE)
    text = SERVICE.read_text()
    from_env_file = service.get("EnvironmentFile") == ["/etc/osvi-archiver/env"]
    assert from_env_file or "LoadCredential" in service
    assert "#LoadCredential=osvi_api_token:/etc/osvi-archiver/token" in text
    # Environment= values show in `systemctl show`: the token never goes there.
    assert not any("TOKEN" in value.upper() for value in service.get("Environment", []))
    assert "api_token" not in text.lower().replace("osvi_api_token", "")
    for value in re.findall(r"OSVI_API_TOKEN=(\S*)", text):
        assert value.startswith('"$(') or not value.rstrip(".,;)`'"), value


def test_service_exec_start_parses_as_the_nightly_sync() -> None:
    active, _ = _service_exec_starts()
    assert len(active) == 1, active
    words = shlex.split(active[0])
    assert words[0] == PROGRAM
    _assert_nightly_sync(_parse(_tool_argv(words)))


def test_service_credential_alternative_parses_and_keeps_the_token_out_of_argv() -> None:
    _, commented = _service_exec_starts()
    assert len(commented) == 1, commented
    words = shlex.split(commented[0])
    assert words[:2] == ["/bin/sh", "-c"]
    script = shlex.split(words[2])
    assert script[0] == "OSVI_API_TOKEN=$(cat $CREDENTIALS_DIRECTORY/osvi_api_token)"
    assert script[1:3] == ["exec", PROGRAM]
    _assert_nightly_sync(_parse(_tool_argv(words)))


# --- the crontab ------------------------------------------------------------------------------


def test_crontab_runs_the_nightly_sync_at_0230() -> None:
    jobs = _crontab_jobs()
    assert len(jobs) == 1, jobs
    fields, command = jobs[0]
    assert fields == ["30", "2", "*", "*", "*"]
    # cron turns an unescaped % into a newline, cutting the command short.
    assert re.search(r"(?<!\\)%", command) is None, command
    words = shlex.split(command)
    assert words[0].startswith("OSVI_API_TOKEN=$(cat ")
    assert words[1] == PROGRAM
    _assert_nightly_sync(_parse(_tool_argv(words)))
    # stderr (and the summary on it) goes to a log file, appended.
    assert "2>&1" in words
    assert any(word.startswith(">>") for word in words)


def test_crontab_explains_exit_codes_mail_and_first_run() -> None:
    text = CRONTAB.read_text()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for code in ("0", "1", "2", "3", "4", "69", "70", "75", "129", "130", "143"):
        assert re.search(rf"^#\s+{code}\s", comments, re.MULTILINE), f"exit code {code}"
    assert re.search(r"^MAILTO=", text, re.MULTILINE)
    assert "--since" in comments


# --- first runs documented in comments --------------------------------------------------------


@pytest.mark.parametrize("path", [CRONTAB, TIMER], ids=lambda p: p.name)
def test_documented_first_sync_parses_with_since(path: Path) -> None:
    commands = _commented_commands(path)
    assert commands, f"{path.name} documents no first sync"
    for command in commands:
        ns = _parse(_tool_argv(shlex.split(command)))
        assert ns.command == "sync"
        assert ns.out_dir == ARCHIVE
        assert ns.since is not None


# --- the environment file ---------------------------------------------------------------------


def test_env_example_holds_only_a_placeholder_token() -> None:
    lines = [line.strip() for line in ENV_EXAMPLE.read_text().splitlines()]
    active = [line for line in lines if line and not line.startswith("#")]
    assert active == [f"OSVI_API_TOKEN={PLACEHOLDER_TOKEN}"]
    for setting in (
        "OSVI_CONCURRENCY=8",
        "OSVI_MAX_REQUESTS_PER_SECOND=10",
        "OSVI_KEEP_RUN_REPORTS=100",
    ):
        assert f"#{setting}" in lines, setting
    assert "0600" in ENV_EXAMPLE.read_text() or "chmod 600" in ENV_EXAMPLE.read_text()


# --- every deploy file ------------------------------------------------------------------------


def test_no_deploy_file_passes_a_token_on_the_command_line() -> None:
    files = sorted(path for path in DEPLOY.iterdir() if path.is_file())
    assert {CRONTAB, SERVICE, TIMER, ENV_EXAMPLE, KUBERNETES} <= set(files)
    for path in files:
        text = path.read_text()
        for flag in ("--token", "--api-token", "--api_token"):
            assert flag not in text, f"{path.name}: {flag}"
        for value in re.findall(r"OSVI_API_TOKEN=(\S*)", text):
            from_file = value.startswith(('"$(', "$("))
            placeholder = not value.rstrip(".,;)`'") or value == PLACEHOLDER_TOKEN
            assert from_file or placeholder, f"{path.name}: OSVI_API_TOKEN={value}"


def test_the_tool_has_no_token_flag() -> None:
    # What the check above relies on: a token flag would not even parse.
    for flag in ("--token", "--api-token"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["sync", "--out", ARCHIVE, flag, "x" * 16])


# --- the Kubernetes example -------------------------------------------------------------------


def _assert_kubernetes_container(container: dict[str, Any]) -> None:
    command = container["command"]
    assert command[0] == "osvi-archiver"
    ns = _parse([*command[1:], *container["args"]])
    assert ns.command == "run"
    assert ns.shard == "auto/8"
    assert ns.out_dir == "/archive"
    assert ns.inputs == ["/input/calls.csv"]


def test_kubernetes_job_command_parses() -> None:
    yaml = pytest.importorskip("yaml")
    job = yaml.safe_load(KUBERNETES.read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    _assert_kubernetes_container(container)
    token = next(e for e in container["env"] if e["name"] == "OSVI_API_TOKEN")
    assert "value" not in token
    assert "secretKeyRef" in token["valueFrom"]


def test_kubernetes_job_command_parses_without_yaml() -> None:
    """The same check with no YAML library: the file's block style read line by line."""
    lines = KUBERNETES.read_text().splitlines()
    (command_line,) = [line for line in lines if line.strip().startswith("command:")]
    command = json.loads(command_line.split(":", 1)[1].split("#")[0])
    start = next(i for i, line in enumerate(lines) if line.strip() == "args:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    args: list[str] = []
    for line in lines[start + 1 :]:
        if len(line) - len(line.lstrip()) <= indent or not line.strip().startswith("- "):
            break
        args.append(line.strip()[2:].split(" #")[0].strip())
    _assert_kubernetes_container({"command": command, "args": args})
