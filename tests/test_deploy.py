"""The deploy examples (deploy/) stay true to the tool: every command line in them parses with the
real argument parser, and no token is ever written into them or passed on a command line.

Plain file reading: no network, no systemd, no cron needed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from archiver.options import build_parser
from archiver.settings import Settings
from archiver.shard import resolve_shard

DEPLOY = Path(__file__).parent.parent / "deploy"
CRONTAB = DEPLOY / "crontab"
SERVICE = DEPLOY / "osvi-archiver.service"
TIMER = DEPLOY / "osvi-archiver.timer"
ENV_EXAMPLE = DEPLOY / "osvi-archiver.env.example"
KUBERNETES = DEPLOY / "kubernetes-indexed-job.yaml"
ALERTS = DEPLOY / "prometheus-alerts.yaml"
CHECK_SERVICE = DEPLOY / "osvi-archiver-check.service"
CHECK_TIMER = DEPLOY / "osvi-archiver-check.timer"
METRICS_SOURCE = Path(__file__).parent.parent / "archiver" / "metrics.py"

PROGRAM = "/usr/local/bin/osvi-archiver"
ARCHIVE = "/srv/osvi-archive"
METRICS = "/var/lib/node_exporter/textfile_collector/osvi_archiver.prom"
CHECK_METRICS = "/var/lib/node_exporter/textfile_collector/osvi_archiver_check.prom"
CREDENTIAL = "osvi-api-token:/etc/osvi-archiver/token"
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


def _service_exec_starts(path: Path = SERVICE) -> tuple[list[str], list[str]]:
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


def test_timer_first_sync_and_install_use_the_services_credential() -> None:
    text = TIMER.read_text()
    assert "install -m 0600 -o root -g root /dev/null /etc/osvi-archiver/token" in text
    commands = _commented_commands(TIMER)
    assert commands
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "systemd-run"
        assert ["-p", f"LoadCredential={CREDENTIAL}"] == words[words.index("-p") :][:2]
        assert "--uid=osvi-archiver" in words
    # How a host without node_exporter runs the unit: documented, not left to fail at night.
    assert "install -d -m 0755 /var/lib/node_exporter/textfile_collector" in text
    assert "systemctl edit osvi-archiver.service" in text


# --- the service ------------------------------------------------------------------------------


def test_service_is_a_sandboxed_oneshot() -> None:
    service = _unit_settings(SERVICE)
    assert service["Type"] == ["oneshot"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["ReadWritePaths"] == [ARCHIVE, f"-{Path(METRICS).parent}"]
    assert service["User"] == ["osvi-archiver"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["UMask"] == ["0077"]
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "MemoryDenyWriteExecute"):
        assert service[key] == ["yes"], key
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["TimeoutStopSec"] == ["30"]


def test_service_starts_on_a_host_without_the_metrics_folder() -> None:
    """ReadWritePaths= of a missing folder fails the unit before the tool starts
    (226/NAMESPACE): every path but the archive is optional (`-`), and so are the folders of
    the tool's own flags that name files outside the archive."""
    service = _unit_settings(SERVICE)
    paths = [path for value in service["ReadWritePaths"] for path in value.split()]
    assert paths[0] == ARCHIVE  # required: without it there is nothing to archive into
    for path in paths[1:]:
        assert path.startswith("-"), f"ReadWritePaths={path} fails a host that lacks it"
    (exec_start,) = _service_exec_starts()[0]
    ns = _parse(_tool_argv(shlex.split(exec_start)))
    assert f"-{Path(ns.metrics_file).parent}" in paths
    assert "StateDirectory" not in service  # it would chown node_exporter's folder


def test_service_failed_calls_fail_the_unit() -> None:
    success = _unit_settings(SERVICE).get("SuccessExitStatus", [])
    codes = {code for value in success for code in value.split()}
    assert codes, "SuccessExitStatus= is expected (75, 143)"
    # 1 (some calls failed) must show as a failed unit, and so must 2, 3, 4, 69 and 70.
    assert not codes & {"1", "2", "3", "4", "69", "70"}, codes


def test_service_takes_the_token_from_a_credential_never_a_literal() -> None:
    service = _unit_settings(SERVICE)
    text = SERVICE.read_text()
    # The tool reads $CREDENTIALS_DIRECTORY/osvi-api-token by itself: no shell wrapper.
    assert service["LoadCredential"] == [CREDENTIAL]
    # One token source at a time: OSVI_API_TOKEN from an environment file would win over the
    # credential, so the file is only the commented-out alternative.
    assert "EnvironmentFile" not in service
    assert "#EnvironmentFile=/etc/osvi-archiver/env" in text.splitlines()
    # Environment= values show in `systemctl show`: the token never goes there.
    assert not any("TOKEN" in value.upper() for value in service.get("Environment", []))
    assert "api_token" not in text.lower().replace("osvi_api_token", "")
    for value in re.findall(r"OSVI_API_TOKEN=(\S*)", text):
        assert value.startswith('"$(') or not value.rstrip(".,;)`'"), value


def test_service_credential_is_the_one_the_tool_reads(tmp_path: Path) -> None:
    from archiver import sources

    name = CREDENTIAL.partition(":")[0]
    assert name == sources.CREDENTIAL_NAME
    # What systemd hands the run: $CREDENTIALS_DIRECTORY/<name>, the file's content as is.
    (tmp_path / name).write_text("0123456789abcdef\n")
    (tmp_path / name).chmod(0o400)
    found = sources.token_file({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert found is not None
    assert found[0] == tmp_path / name
    assert sources.read_token_file(*found) == "0123456789abcdef"


def test_service_exec_start_parses_as_the_nightly_sync() -> None:
    active, commented = _service_exec_starts()
    assert len(active) == 1, active
    assert not commented, commented  # the credential needs no alternative command line
    words = shlex.split(active[0])
    assert words[0] == PROGRAM  # the program itself: no shell, no `cat` of the token
    assert "$" not in active[0]
    _assert_nightly_sync(_parse(_tool_argv(words)))


def _scratch_units(tmp_path: Path) -> tuple[Path, Path]:
    """The service and timer as systemd-analyze reads them here, with the program path
    pointing at an executable that exists (verify checks it; nothing else is changed)."""
    program = shutil.which("true")
    assert program
    service = tmp_path / SERVICE.name
    timer = tmp_path / TIMER.name
    service.write_text(SERVICE.read_text().replace(PROGRAM, program))
    timer.write_text(TIMER.read_text())
    return service, timer


def _systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C"}
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    service, timer = _scratch_units(tmp_path)
    result = _systemd_analyze("verify", str(service), str(timer))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Warnings (an unknown key, a bad value) leave the exit code 0: none may name our units.
    assert "osvi-archiver" not in output, output


def test_service_sandbox_scores_ok_in_systemd_analyze_security(tmp_path: Path) -> None:
    service, _ = _scratch_units(tmp_path)
    # --threshold is in tenths of the printed level: 20 is 2.0. 1.2 with systemd 252 ("OK" is
    # up to 3.9); a newer systemd may weigh more settings, hence the margin.
    result = _systemd_analyze("security", "--offline=true", "--threshold=20", str(service))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert level, result.stdout[-2000:] + result.stderr
    assert float(level[1]) <= 2.0, result.stdout
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


# --- the crontab ------------------------------------------------------------------------------


def test_crontab_runs_the_nightly_sync_at_0230() -> None:
    jobs = _crontab_jobs()
    assert len(jobs) == 2, jobs  # the nightly sync, the weekly check
    fields, command = jobs[0]
    assert fields == ["30", "2", "*", "*", "*"]
    # cron turns an unescaped % into a newline, cutting the command short.
    assert re.search(r"(?<!\\)%", command) is None, command
    words = shlex.split(command)
    # The tool reads the token file itself: no $(cat ...) putting it in the environment.
    assert words[0] == "OSVI_API_TOKEN_FILE=$HOME/.config/osvi-archiver/token"
    assert words[1] == PROGRAM
    _assert_nightly_sync(_parse(_tool_argv(words)))
    # stderr (and the summary on it) goes to a log file, appended.
    assert "2>&1" in words
    assert any(word.startswith(">>") for word in words)


def test_crontab_checks_the_archive_every_sunday_after_the_night() -> None:
    fields, command = _crontab_jobs()[1]
    assert fields == ["0", "6", "*", "*", "0"]  # Sunday 06:00, after the 02:30 sync
    assert re.search(r"(?<!\\)%", command) is None, command
    words = shlex.split(command)
    assert words[0] == "OSVI_API_TOKEN_FILE=$HOME/.config/osvi-archiver/token"
    _assert_weekly_check(_parse(_tool_argv(words)))
    assert "2>&1" in words
    assert any(word.startswith(">>") and "check.log" in word for word in words)


def _assert_weekly_check(ns: argparse.Namespace) -> None:
    assert ns.command == "check"
    assert ns.out_dir == ARCHIVE
    assert ns.since == "8d"  # a week and a night of overlap
    assert ns.until is None  # up to the sync watermark
    assert ns.log_format == "json"
    # Its own textfile: a file is replaced whole, so sharing the nightly's would erase it.
    assert ns.metrics_file == CHECK_METRICS != METRICS


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
    commands = _commented_commands(path)
    assert commands, f"{path.name} documents no first sync"
    for command in commands:
        ns = _parse(_tool_argv(shlex.split(command)))
        assert ns.command == "sync"
        assert ns.out_dir == ARCHIVE
        assert ns.since is not None


# --- the weekly check -------------------------------------------------------------------------


def test_check_service_runs_the_weekly_check_in_the_nightlys_sandbox() -> None:
    check, nightly = _unit_settings(CHECK_SERVICE), _unit_settings(SERVICE)
    (exec_start,) = _service_exec_starts(CHECK_SERVICE)[0]
    words = shlex.split(exec_start)
    assert words[0] == PROGRAM
    _assert_weekly_check(_parse(_tool_argv(words)))
    assert check["LoadCredential"] == [CREDENTIAL]
    assert check["Type"] == ["oneshot"]
    assert not check.get("SuccessExitStatus")  # 1 (calls missing) fails the unit: noticed
    for key, values in nightly.items():
        if key in {"ProtectSystem", "ReadWritePaths", "User", "UMask", "NoNewPrivileges"} or (
            key.startswith(("Protect", "Private", "Restrict", "SystemCall"))
        ):
            assert check.get(key) == values, key


def test_check_timer_runs_weekly_after_the_night() -> None:
    timer = _unit_settings(CHECK_TIMER)
    assert timer["OnCalendar"] == ["Sun *-*-* 06:00:00"]
    assert timer["Persistent"] == ["true"]
    assert timer["Unit"] == [CHECK_SERVICE.name]
    text = CHECK_TIMER.read_text()
    assert "systemctl enable --now osvi-archiver-check.timer" in text


def test_check_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    program = shutil.which("true")
    assert program
    service = tmp_path / CHECK_SERVICE.name
    service.write_text(CHECK_SERVICE.read_text().replace(PROGRAM, program))
    timer = tmp_path / CHECK_TIMER.name
    timer.write_text(CHECK_TIMER.read_text())
    result = _systemd_analyze("verify", str(service), str(timer))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "osvi-archiver" not in output, output


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
    assert {CRONTAB, SERVICE, TIMER, ENV_EXAMPLE, KUBERNETES, BUCKET_JOB, ALERTS, CHECK_SERVICE,
            CHECK_TIMER} <= set(files)  # fmt: skip
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


# --- the Kubernetes examples and the alert rules ---------------------------------------------
#
# No YAML library is a dependency, so the manifests and the alert rules are read by _read_yaml:
# the subset of YAML they are written in (block mappings and sequences, flat flow collections,
# plain, quoted and integer scalars, comments). Anything else raises, so the files cannot drift
# into syntax the reader would misread; where PyYAML is installed, a test checks both read the
# same.

BUCKET_JOB = DEPLOY / "kubernetes-bucket-job.yaml"
JOBS = [KUBERNETES, BUCKET_JOB]

_Line = tuple[int, str]  # (indent, text with the comment cut off)
_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
# Plain scalars YAML 1.1 readers take as booleans, floats, octals or dates: written quoted here.
_AMBIGUOUS = re.compile(
    r"(yes|no|on|off|y|n|true|false|null)|[-+]?[0-9_]*\.[0-9]+|0[0-9]+|\d{4}-\d\d-\d\d.*",
    re.IGNORECASE,
)
# Credentials by name: never a literal `value:` in the manifest (paths such as *_FILE are not).
_CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|ACCOUNT_KEY|SERVICE_ACCOUNT")
_QUANTITY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
# The volume types the "restricted" Pod Security Standard admits.
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _strip_comment(line: str) -> str:
    """The line without its comment: a # at the start or after a space, outside quotes."""
    quote = ""
    escaped = False
    for i, char in enumerate(line):
        if quote:
            escaped = not escaped and quote == '"' and char == "\\"
            if char == quote and not escaped:
                quote = ""
        elif char in "\"'" and (i == 0 or line[i - 1] in " [{,"):
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _flow(text: str) -> Any:
    """A flat flow collection: [a, b] or {k: v, ...}, of scalars only."""
    closing = {"[": "]", "{": "}"}[text[0]]
    inner = text[1:-1].strip()
    if not text.endswith(closing) or any(c in inner for c in "[]{}"):
        raise ValueError(f"not a flat flow collection: {text!r}")
    parts = [part.strip() for part in inner.split(",")] if inner else []
    if closing == "]":
        return [_scalar(part) for part in parts]
    pairs = [_entry(part) for part in parts]
    if any(not value for _, value in pairs):
        raise ValueError(f"a key without a value in {text!r}")
    return {key: _scalar(value) for key, value in pairs}


def _scalar(text: str) -> Any:
    if text[0] in "[{":
        return _flow(text)
    if text[0] == '"':
        return json.loads(text)  # a double-quoted scalar without YAML-only escapes
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise ValueError(f"unterminated quote: {text!r}")
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    special = text[0] in "&*!|>%@`?:,]}" or (text[0] == "-" and not text.startswith("--"))
    if special or _AMBIGUOUS.fullmatch(text):
        raise ValueError(f"not in the YAML subset read here: {text!r}")
    if ": " in text or text.endswith(":") or " #" in text:
        raise ValueError(f"not a plain scalar: {text!r}")
    return text


def _entry(text: str) -> tuple[str, str]:
    """`key: value` (or `key:`) as (key, value text)."""
    key, sep, value = text.partition(": ")
    if not sep and text.endswith(":"):
        key, sep = text[:-1], ":"
    if not sep or not _KEY.fullmatch(key):
        raise ValueError(f"not `key: value`: {text!r}")
    return key, value.strip()


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _nested(lines: list[_Line], i: int, indent: int) -> tuple[Any, int]:
    """The block under a `key:` or a `-` at `indent`: deeper, or a sequence at that indent."""
    if i < len(lines):
        sequence_here = lines[i][0] == indent and _is_item(lines[i][1])
        if lines[i][0] > indent or sequence_here:
            return _block(lines, i)
    return None, i


def _sequence(lines: list[_Line], i: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
        rest = lines[i][1][1:]
        body = rest.lstrip()
        if not body:
            item, i = _nested(lines, i + 1, indent + 1)
        elif body[0] not in "\"'[{" and (": " in body or body.endswith(":")):
            # `- key: value`: a mapping whose keys line up with this first one.
            lines[i] = (indent + 1 + len(rest) - len(body), body)
            item, i = _mapping(lines, i, lines[i][0])
        else:
            item, i = _scalar(body), i + 1
        items.append(item)
    return items, i


def _mapping(lines: list[_Line], i: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not _is_item(lines[i][1]):
        key, value = _entry(lines[i][1])
        if key in result:
            raise ValueError(f"key {key!r} twice")
        if value:
            result[key], i = _scalar(value), i + 1
        else:
            result[key], i = _nested(lines, i + 1, indent)
    if i < len(lines) and lines[i][0] > indent:
        raise ValueError(f"unexpected indentation: {lines[i][1]!r}")
    return result, i


def _block(lines: list[_Line], i: int) -> tuple[Any, int]:
    indent, text = lines[i]
    return _sequence(lines, i, indent) if _is_item(text) else _mapping(lines, i, indent)


def _read_yaml(text: str) -> Any:
    """One YAML document of the subset described above, as PyYAML's safe_load reads it."""
    lines: list[_Line] = []
    for raw in text.splitlines():
        content = _strip_comment(raw).rstrip()
        if not content.strip():
            continue
        stripped = content.lstrip(" ")
        if stripped[0] == "\t" or stripped in ("---", "..."):
            raise ValueError(f"not in the YAML subset read here (a tab, or documents): {raw!r}")
        lines.append((len(content) - len(stripped), stripped))
    if not lines:
        return None
    value, end = _block(lines, 0)
    if end != len(lines):
        raise ValueError(f"unexpected indentation: {lines[end][1]!r}")
    return value


def _job(path: Path) -> dict[str, Any]:
    job = _read_yaml(path.read_text())
    assert isinstance(job, dict)
    return job


def _bucket_job() -> dict[str, Any]:
    return _job(BUCKET_JOB)


def _bucket_pod(job: dict[str, Any]) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


def _bucket_container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = _bucket_pod(job)["containers"]
    assert isinstance(container, dict)
    return container


def _bucket_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = {entry["name"]: entry for entry in container.get("env", [])}
    assert len(env) == len(container.get("env", [])), "an env variable set twice"
    return env


def _bucket_args(container: dict[str, Any]) -> argparse.Namespace:
    command = container["command"]
    assert command == ["osvi-archiver"]
    return _parse([*command[1:], *container["args"]])


def _commented_secret_documents() -> list[str]:
    """The Secret manifests quoted in the header comment (`#   ` and the YAML), one a string."""
    lines = BUCKET_JOB.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   apiVersion:"))
    block: list[str] = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    return "\n".join(block).split("\n---\n")


def _commented_secrets() -> list[Any]:
    return [_read_yaml(document) for document in _commented_secret_documents()]


def _bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert match, quantity
    return int(match[1]) * _QUANTITY.get(match[2], 1)


@pytest.mark.parametrize(
    "text",
    [
        "a: |\n  text\n",
        "a: &anchor 1\nb: *anchor\n",
        "a: 1\n---\nb: 2\n",
        "a: [1, [2]]\n",
        "a: 1\n   b: 2\n",
        "a: yes\n",
        "a: 0600\n",
        "a: 2025-01-01\n",
        "a: 1\na: 2\n",
        "- - a\n",
    ],
    ids=repr,
)
def test_yaml_reader_refuses_what_it_would_misread(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        _read_yaml(text)


def test_yaml_reader_reads_the_kubernetes_examples_and_alerts_as_pyyaml_does() -> None:
    yaml = pytest.importorskip("yaml")
    for path in (*JOBS, ALERTS):
        assert _read_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path.name
    for document in _commented_secret_documents():
        assert _read_yaml(document) == yaml.safe_load(document), document


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_is_an_indexed_job_with_one_shard_per_index(path: Path) -> None:
    job = _job(path)
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"]
    count = spec["completions"]
    ns = _bucket_args(_bucket_container(job))
    # --shard auto/N reads K from JOB_COMPLETION_INDEX, 0 to completions - 1: each index is
    # a shard, and every shard has an index.
    assert ns.shard == f"auto/{count}"
    for index in range(count):
        assert resolve_shard(ns.shard, {"JOB_COMPLETION_INDEX": str(index)}) == (index, count)
    assert isinstance(spec["backoffLimitPerIndex"], int)
    assert spec["backoffLimitPerIndex"] >= 3  # room for a killed pod's lease to expire (75)
    assert isinstance(spec["maxFailedIndexes"], int)
    assert 1 <= spec["maxFailedIndexes"] <= count
    assert spec.get("podReplacementPolicy", "Failed") == "Failed"
    assert spec["ttlSecondsAfterFinished"] > 0
    assert _bucket_pod(job)["restartPolicy"] == "Never"  # what podFailurePolicy requires


def test_bucket_job_command_is_a_sync_into_a_bucket() -> None:
    job = _bucket_job()
    container = _bucket_container(job)
    args = container["args"]
    assert any(arg.startswith("--shard") for arg in args), args
    assert any(arg.startswith("--out=s3://") for arg in args), args
    ns = _bucket_args(container)
    assert ns.command == "sync"  # the API's own listing: no input file, no ConfigMap
    assert re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]+[a-z0-9]/[a-z0-9-]+(/[a-z0-9-]+)*", ns.out_dir)
    assert ns.since is not None  # a sync into an empty bucket needs its start
    assert ns.log_format == "json"
    assert ns.concurrency <= 32  # what the memory limit is sized for
    assert _bytes(container["resources"]["limits"]["memory"]) == 512 << 20
    assert _bytes(container["resources"]["requests"]["memory"]) <= 512 << 20
    assert "nodeName" not in _bucket_pod(job)


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_failure_policy_follows_the_exit_codes(path: Path) -> None:
    job = _job(path)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    # The first matching rule wins: a drained pod (DisruptionTarget, often exit 143) must meet
    # the Ignore rule before the exit-code rules count it.
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    actions: dict[int, str] = {}
    name = _bucket_container(job)["name"]
    for rule in rules[1:]:
        codes = rule["onExitCodes"]
        assert codes["operator"] == "In"
        assert codes.get("containerName", name) == name
        values = codes["values"]
        # The API's own rules: ordered, no repeats, no 0 with In.
        assert values == sorted(set(values)), values
        assert 0 not in values
        for code in values:
            assert code not in actions, f"exit {code} in two rules"
            actions[code] = rule["action"]
    assert actions[2] == actions[3] == "FailIndex"  # a retry fails the same way
    assert actions[1] == "FailIndex"  # finished, with failed calls: the next sync retries them
    for code in (69, 75, 129, 130, 143):
        assert actions[code] == "Count", code
    assert "Ignore" not in actions.values()  # an ignored exit would be retried forever


def test_bucket_job_has_no_shared_volume_and_keeps_its_state_on_an_emptydir() -> None:
    job = _bucket_job()
    pod = _bucket_pod(job)
    container = _bucket_container(job)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for volume in volumes.values():
        kinds = set(volume) - {"name"}
        assert kinds == {"emptyDir"}, volume  # no persistentVolumeClaim, configMap, nfs, ...
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert {mount["name"] for mount in mounts.values()} <= set(volumes)
    state_dir = _bucket_env(container)["OSVI_STATE_DIR"]["value"]
    assert mounts[state_dir].get("readOnly", False) is False
    assert "emptyDir" in volumes[mounts[state_dir]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # writable /tmp, read-only root
    assert "initContainers" not in pod
    for entry in [*container.get("env", []), *container.get("envFrom", [])]:
        assert "configMapKeyRef" not in entry.get("valueFrom", {}), entry
        assert "configMapRef" not in entry, entry


def test_bucket_job_token_and_store_credentials_come_from_secrets() -> None:
    container = _bucket_container(_bucket_job())
    env = _bucket_env(container)
    token = env["OSVI_API_TOKEN"]
    assert "value" not in token
    assert set(token["valueFrom"]["secretKeyRef"]) >= {"name", "key"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    for name, entry in env.items():
        if _CREDENTIAL.search(name) and not name.endswith("_FILE"):
            assert "value" not in entry, f"{name} holds a literal value"
            assert set(entry["valueFrom"]) == {"secretKeyRef"}, name
    for entry in container.get("envFrom", []):
        assert set(entry) <= {"secretRef", "prefix"}, entry
    text = BUCKET_JOB.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)  # an AWS access key id
    assert not re.search(r"[A-Za-z0-9/+]{40}", text)  # the shape of a secret access key


def test_bucket_job_settings_in_env_are_real_settings() -> None:
    env = _bucket_env(_bucket_container(_bucket_job()))
    names = [name for name in env if name.startswith("OSVI_")]
    assert "OSVI_STATE_DIR" in names
    for name in names:
        assert name.removeprefix("OSVI_").lower() in Settings.model_fields, name


def test_bucket_job_documents_the_secrets_with_placeholders_only() -> None:
    secrets = _commented_secrets()
    container = _bucket_container(_bucket_job())
    referenced = {
        (ref["name"], ref["key"])
        for entry in container["env"]
        if (ref := entry.get("valueFrom", {}).get("secretKeyRef"))
    }
    documented = set()
    for secret in secrets:
        assert secret["apiVersion"] == "v1"
        assert secret["kind"] == "Secret"
        assert set(secret["stringData"].values()) == {"replace-me"}, secret
        documented |= {(secret["metadata"]["name"], key) for key in secret["stringData"]}
    assert documented == referenced
    text = BUCKET_JOB.read_text()
    for name in {name for name, _ in referenced}:
        assert f"kubectl create secret generic {name} " in text, name
    assert "IRSA" in text
    assert "AWS_ROLE_ARN" in text
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in text


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_security_context_meets_the_restricted_standard(path: Path) -> None:
    job = _job(path)
    pod = _bucket_pod(job)
    container = _bucket_container(job)
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert context[key] == 10001, key
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    own = container["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"]["drop"] == ["ALL"]
    assert not own["capabilities"].get("add")
    # Nothing in the container undoes the pod's settings.
    assert own.get("privileged", False) is False
    assert own.get("runAsNonRoot", True) is True
    assert own.get("runAsUser", 10001) != 0
    assert own.get("seccompProfile", {"type": "RuntimeDefault"})["type"] != "Unconfined"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert pod.get(key, False) is False, key
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= _RESTRICTED_VOLUMES, volume
    assert not any("hostPort" in port for port in container.get("ports", []))


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_token_comes_from_a_secret_and_nothing_from_a_configmap(path: Path) -> None:
    job = _job(path)
    pod = _bucket_pod(job)
    container = _bucket_container(job)
    token = _bucket_env(container)["OSVI_API_TOKEN"]
    assert set(token) == {"name", "valueFrom"}
    assert set(token["valueFrom"]["secretKeyRef"]) >= {"name", "key"}
    for name, entry in _bucket_env(container).items():
        if _CREDENTIAL.search(name) and not name.endswith("_FILE"):
            assert "value" not in entry, f"{name} holds a literal value"
    # A ConfigMap holds at most 1 MiB (some 28,000 ids): no input comes from one.
    for entry in [*container.get("env", []), *container.get("envFrom", [])]:
        assert "configMapKeyRef" not in entry.get("valueFrom", {}), entry
        assert "configMapRef" not in entry, entry
    assert not any("configMap" in volume for volume in pod["volumes"])
    assert "initContainers" not in pod
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_image_is_the_one_the_dockerfile_builds(path: Path) -> None:
    job = _job(path)
    container = _bucket_container(job)
    assert container["image"] == "osvi-archiver:latest"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # The image's user is the pod's (tests/test_packaging.py checks the Dockerfile's USER).
    assert _bucket_pod(job)["securityContext"]["runAsUser"] == 10001
    lines = path.read_text().splitlines()
    image = next(i for i, line in enumerate(lines) if line.strip().startswith("image:"))
    comment: list[str] = []
    for line in reversed(lines[:image]):
        if not line.strip().startswith("#"):
            break
        comment.insert(0, line.strip().lstrip("#").strip())
    text = " ".join(comment)
    assert "Dockerfile" in text, text
    assert "docker build -t osvi-archiver ." in text, text


def test_indexed_job_syncs_every_shard_into_one_shared_volume() -> None:
    job = _job(KUBERNETES)
    pod = _bucket_pod(job)
    container = _bucket_container(job)
    ns = _bucket_args(container)
    # The API's own listing: no input file to produce and copy, nothing in a ConfigMap.
    assert ns.command == "sync"
    assert not getattr(ns, "inputs", None)
    assert ns.since is not None  # a sync's first run needs its start
    assert ns.log_format == "json"
    assert ns.concurrency <= 32  # what the memory limit is sized for
    assert _bytes(container["resources"]["limits"]["memory"]) == 512 << 20
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    archive = mounts[ns.out_dir]
    assert archive.get("readOnly", False) is False
    # The one volume every pod shares (ReadWriteMany): each shard's state, lock and manifest.
    claim = volumes[archive["name"]]["persistentVolumeClaim"]
    assert claim == {"claimName": "osvi-archive"}
    assert "ReadWriteMany" in KUBERNETES.read_text()
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # writable /tmp, read-only root
    env = _bucket_env(container)
    assert env["HOME"]["value"] == "/tmp"
    assert "OSVI_STATE_DIR" not in env  # a folder's state lives in the folder itself
    for name in (name for name in env if name.startswith("OSVI_")):
        assert name.removeprefix("OSVI_").lower() in Settings.model_fields, name
    # Without it, every pod start chowns millions of recordings for fsGroup first.
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert "nodeName" not in pod


def test_indexed_job_explains_why_sync() -> None:
    comments = " ".join(
        line.lstrip("#").strip()
        for line in KUBERNETES.read_text().splitlines()
        if line.strip().startswith("#")
    )
    assert "ConfigMap" in comments
    assert "1 MiB" in comments
    assert "kubectl create secret generic osvi-api-token " in comments
    assert "osvi-archiver verify --out /archive" in comments


def test_deadline_exit_is_retried_like_a_held_lock() -> None:
    """--max-duration's exit code is the tool's (DeadlineReached), not made up here: a pod
    stopped at its deadline is retried as one that met a held lock (75) is, and the unit takes
    it as it takes 75 and 143."""
    from archiver.errors import DeadlineReached

    code = DeadlineReached("1h").exit_code
    rules = _job(KUBERNETES)["spec"]["podFailurePolicy"]["rules"]
    actions = {
        value: rule["action"] for rule in rules[1:] for value in rule["onExitCodes"]["values"]
    }
    assert actions[code] == actions[75] == "Count"
    # The bucket Job has no rule for it: the default, Count, all the same.
    bucket = _job(BUCKET_JOB)["spec"]["podFailurePolicy"]["rules"]
    assert all(code not in rule.get("onExitCodes", {}).get("values", []) for rule in bucket)
    success = _unit_settings(SERVICE)["SuccessExitStatus"][0].split()
    assert {str(code), "75", "143"} <= set(success)


def test_kubernetes_examples_pass_the_schema_validator() -> None:
    """kubernetes-validate (PyPI; it carries the API's JSON schemas, no cluster needed), when
    installed: strict, so a misspelt field fails, at the oldest version the Jobs need and the
    newest it knows."""
    validate = pytest.importorskip("kubernetes_validate")
    for path in JOBS:
        for version in ("1.29.0", validate.utils.latest_version()):
            validate.validate(_job(path), version, strict=True)


# --- the alert rules ----------------------------------------------------------------------------

# The sync watermark's gauge (issue 15), with the labels of the others (command, shard).
_WATERMARK = "osvi_archiver_sync_watermark_timestamp_seconds"
_METRIC_NAME = re.compile(r"\bosvi_archiver_[a-z_]+\b")


def _alert_rules() -> list[dict[str, Any]]:
    groups = _read_yaml(ALERTS.read_text())["groups"]
    assert [group["name"] for group in groups] == ["osvi-archiver"]
    rules = groups[0]["rules"]
    assert isinstance(rules, list)
    return rules


def _written_metric_names() -> set[str]:
    return set(_METRIC_NAME.findall(METRICS_SOURCE.read_text()))


def test_alert_rules_are_complete() -> None:
    rules = _alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names), names
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"OsviArchiver[A-Za-z]+", rule["alert"]), rule["alert"]
        assert isinstance(rule["expr"], str)
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule
        assert rule["annotations"]["summary"], rule
        assert "{{ $labels.instance }}" in rule["annotations"]["summary"], rule


def test_alert_rules_use_only_metrics_the_tool_writes() -> None:
    written = _written_metric_names()
    assert {"osvi_archiver_exit_code", "osvi_archiver_last_success_timestamp_seconds"} <= written
    assert _WATERMARK in written
    for rule in _alert_rules():
        for name in _METRIC_NAME.findall(rule["expr"]):
            assert name in written, f"{rule['alert']}: {name}"


def test_alert_rules_cover_the_nightly_the_exit_code_and_the_watermark() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _alert_rules()}
    assert (
        exprs["OsviArchiverNightlyNotSucceeded"]
        == 'time() - osvi_archiver_last_success_timestamp_seconds{command="sync"} > 26 * 3600'
    )
    assert exprs["OsviArchiverExitCode"] == "osvi_archiver_exit_code != 0"
    assert exprs["OsviArchiverWatermarkStuck"] == f"time() - {_WATERMARK} > 36 * 3600"
    # The never-succeeded case: no last-success series at all, so the first rule cannot fire.
    never = exprs["OsviArchiverNightlyNeverSucceeded"]
    assert "unless osvi_archiver_last_success_timestamp_seconds" in never
    # The weekly check (issue 20): what it found missing, and that it runs at all.
    assert exprs["OsviArchiverCheckFoundMissingCalls"] == "osvi_archiver_check_missing_calls > 0"
    assert exprs["OsviArchiverCheckNotRun"] == (
        "time() - osvi_archiver_check_timestamp_seconds > 8 * 86400"
    )
    assert exprs["OsviArchiverCheckFailed"] == (
        "osvi_archiver_check_exit_code != 0 unless osvi_archiver_check_missing_calls > 0"
    )


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    return promtool


def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


def _alert(
    name: str, severity: str, summary: str, description: str, command: str = "sync"
) -> dict[str, Any]:
    """An alert promtool must see: the labels, and the annotations as rendered."""
    return {
        "exp_labels": {"alertname": name, "severity": severity, **_SYNC, "command": command},
        "exp_annotations": {"summary": summary, "description": description},
    }


_SYNC = {"command": "sync", "instance": "host:9100", "job": "node"}


def _check_failed(code: int) -> dict[str, Any]:
    return _alert(
        "OsviArchiverCheckFailed",
        "ticket",
        f"osvi-archiver on host:9100: the check exited {code}",
        "The check could not prove the archive complete: its log (journalctl -u "
        "osvi-archiver-check, or check.log) says why (a window the listing could not give, an "
        "exit code of the README).",
        command="check",
    )


_SERIES = '{command="sync",instance="host:9100",job="node"}'
_EXIT_CODE_DESCRIPTION = (
    "See the exit codes in the README (1: some calls failed, 3: token rejected, 4: local fatal "
    "error, 69: unreachable, 75: another run held the archive, 124: stopped at --max-duration); "
    "the run report in the archive and the log say more."
)


def test_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's own rule tests, on series a textfile would give (samples every minute;
    promtool's clock starts at 0, so a timestamp of 0 is as old as the evaluation time)."""
    promtool = _promtool()
    minutes = 40 * 60
    tests = [
        {
            "interval": "1m",
            "input_series": [
                # Succeeded once at time 0, never since: old at 26 h, alert 10 min later.
                {
                    "series": f"osvi_archiver_last_success_timestamp_seconds{_SERIES}",
                    "values": f"0x{minutes}",
                },
                {"series": f"osvi_archiver_exit_code{_SERIES}", "values": f"0 1x{minutes}"},
                {
                    "series": f"osvi_archiver_sync_watermark_timestamp_seconds{_SERIES}",
                    "values": f"0x{minutes}",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "25h", "alertname": "OsviArchiverNightlyNotSucceeded"},
                {
                    "eval_time": "26h11m",
                    "alertname": "OsviArchiverNightlyNotSucceeded",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverNightlyNotSucceeded",
                            "page",
                            "osvi-archiver on host:9100: no successful nightly sync for 26 h",
                            "The last sync that exited 0 ended 1d 2h 11m 0s ago. "
                            "osvi_archiver_exit_code says how the last run ended; the journal "
                            "(journalctl -u osvi-archiver) or sync.log, and the run report in "
                            "the archive, say why.",
                        )
                    ],
                },
                {"eval_time": "3m", "alertname": "OsviArchiverExitCode"},
                {
                    "eval_time": "7m",
                    "alertname": "OsviArchiverExitCode",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverExitCode",
                            "ticket",
                            "osvi-archiver sync on host:9100 exited 1",
                            _EXIT_CODE_DESCRIPTION,
                        )
                    ],
                },
                {"eval_time": "30h", "alertname": "OsviArchiverNightlyNeverSucceeded"},
                {"eval_time": "35h", "alertname": "OsviArchiverWatermarkStuck"},
                {
                    "eval_time": "36h31m",
                    "alertname": "OsviArchiverWatermarkStuck",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverWatermarkStuck",
                            "ticket",
                            "osvi-archiver on host:9100: the sync watermark has not moved for 36 h",
                            "The watermark is 1d 12h 31m 0s behind: calls picked after it are "
                            "not known to be archived.",
                        )
                    ],
                },
            ],
        },
        {
            "interval": "1m",
            # Runs that all exited 3, and no success ever: no last-success series.
            "input_series": [
                {"series": f"osvi_archiver_exit_code{_SERIES}", "values": f"3x{minutes}"},
            ],
            "alert_rule_test": [
                {"eval_time": "25h", "alertname": "OsviArchiverNightlyNeverSucceeded"},
                {
                    "eval_time": "26h1m",
                    "alertname": "OsviArchiverNightlyNeverSucceeded",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverNightlyNeverSucceeded",
                            "page",
                            "osvi-archiver on host:9100: the nightly sync has never succeeded",
                            "Every sync for 26 h ended with a non-zero exit code (the last: 3), "
                            "and none ever exited 0 on this archive.",
                        )
                    ],
                },
                {"eval_time": "26h1m", "alertname": "OsviArchiverNightlyNotSucceeded"},
            ],
        },
    ]
    check = '{command="check",instance="host:9100",job="node"}'
    tests.append(
        {
            "interval": "1m",
            # A check that found 3 missing calls at time 0, and none since.
            "input_series": [
                {"series": f"osvi_archiver_check_missing_calls{check}", "values": "3x10 0x10"},
                {
                    "series": f"osvi_archiver_check_timestamp_seconds{check}",
                    "values": f"0x{minutes}",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "OsviArchiverCheckFoundMissingCalls"},
                {
                    "eval_time": "6m",
                    "alertname": "OsviArchiverCheckFoundMissingCalls",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverCheckFoundMissingCalls",
                            "ticket",
                            "osvi-archiver on host:9100: the check found 3 calls missing from "
                            "the archive",
                            "`osvi-archiver check --out DIR --since 8d` lists them with why "
                            "(failed and its kind, or never seen); `osvi-archiver check --out "
                            "DIR --since 8d --ids | osvi-archiver run --out DIR -` archives them.",
                            command="check",
                        )
                    ],
                },
                {"eval_time": "20m", "alertname": "OsviArchiverCheckFoundMissingCalls"},
                {"eval_time": "39h", "alertname": "OsviArchiverCheckNotRun"},
            ],
        }
    )
    tests.append(
        {
            "interval": "1m",
            # A check that exits 1 with nothing missing (a window it could not list), then one
            # that found missing calls (the other alert's), then a check refused its token (3).
            "input_series": [
                {"series": f"osvi_archiver_check_exit_code{check}", "values": "1x10 1x10 3x10"},
                {"series": f"osvi_archiver_check_missing_calls{check}", "values": "0x10 2x10 _x10"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "8m",
                    "alertname": "OsviArchiverCheckFailed",
                    "exp_alerts": [_check_failed(1)],
                },
                {"eval_time": "19m", "alertname": "OsviArchiverCheckFailed"},
                {  # the missing count gone stale 5 min after its last sample, then 5 min more
                    "eval_time": "33m",
                    "alertname": "OsviArchiverCheckFailed",
                    "exp_alerts": [_check_failed(3)],
                },
            ],
        }
    )
    tests.append(
        {
            "interval": "4m",  # under the 5 min after which a series goes stale
            # The last check ended at time 0, and none since: 8 days later, an hour's grace.
            "input_series": [
                {"series": f"osvi_archiver_check_timestamp_seconds{check}", "values": "0x3000"},
            ],
            "alert_rule_test": [
                {"eval_time": "192h30m", "alertname": "OsviArchiverCheckNotRun"},
                {
                    "eval_time": "193h10m",
                    "alertname": "OsviArchiverCheckNotRun",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverCheckNotRun",
                            "ticket",
                            "osvi-archiver on host:9100: no check of the archive for 8 days",
                            "The last check ended 8d 1h 10m 0s ago.",
                            command="check",
                        )
                    ],
                },
            ],
        }
    )
    spec = tmp_path / "alerts-test.yaml"
    # JSON is YAML: promtool reads it as such.
    spec.write_text(json.dumps({"rule_files": [str(ALERTS)], "tests": tests}))
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
