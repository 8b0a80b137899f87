"""The systemd units (deploy/osvi-archiver{,-check}.{service,timer}): the nightly sync and the
weekly check, sandboxed, their command lines parsed by the real parser."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.common import (
    ARCHIVE,
    CHECK_SERVICE,
    CHECK_TIMER,
    CREDENTIAL,
    METRICS,
    PROGRAM,
    SERVICE,
    TIMER,
    assert_nightly_sync,
    assert_weekly_check,
    commented_commands,
    parse,
    service_exec_starts,
    tool_argv,
    unit_settings,
)

# --- the timer --------------------------------------------------------------------------------


def test_timer_runs_nightly_and_catches_up_missed_nights() -> None:
    timer = unit_settings(TIMER)
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
    commands = commented_commands(TIMER)
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
    service = unit_settings(SERVICE)
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
    service = unit_settings(SERVICE)
    paths = [path for value in service["ReadWritePaths"] for path in value.split()]
    assert paths[0] == ARCHIVE  # required: without it there is nothing to archive into
    for path in paths[1:]:
        assert path.startswith("-"), f"ReadWritePaths={path} fails a host that lacks it"
    (exec_start,) = service_exec_starts()[0]
    ns = parse(tool_argv(shlex.split(exec_start)))
    assert f"-{Path(ns.metrics_file).parent}" in paths
    assert "StateDirectory" not in service  # it would chown node_exporter's folder


def test_service_failed_calls_fail_the_unit() -> None:
    success = unit_settings(SERVICE).get("SuccessExitStatus", [])
    codes = {code for value in success for code in value.split()}
    assert codes, "SuccessExitStatus= is expected (75, 143)"
    # 1 (some calls failed) must show as a failed unit, and so must 2, 3, 4, 69 and 70.
    assert not codes & {"1", "2", "3", "4", "69", "70"}, codes


def test_service_takes_the_token_from_a_credential_never_a_literal() -> None:
    service = unit_settings(SERVICE)
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
    from archiver.config import token_and_file as sources

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
    active, commented = service_exec_starts()
    assert len(active) == 1, active
    assert not commented, commented  # the credential needs no alternative command line
    words = shlex.split(active[0])
    assert words[0] == PROGRAM  # the program itself: no shell, no `cat` of the token
    assert "$" not in active[0]
    assert_nightly_sync(parse(tool_argv(words)))


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


# --- the weekly check -------------------------------------------------------------------------


def test_check_service_runs_the_weekly_check_in_the_nightlys_sandbox() -> None:
    check, nightly = unit_settings(CHECK_SERVICE), unit_settings(SERVICE)
    (exec_start,) = service_exec_starts(CHECK_SERVICE)[0]
    words = shlex.split(exec_start)
    assert words[0] == PROGRAM
    assert_weekly_check(parse(tool_argv(words)))
    assert check["LoadCredential"] == [CREDENTIAL]
    assert check["Type"] == ["oneshot"]
    assert not check.get("SuccessExitStatus")  # 1 (calls missing) fails the unit: noticed
    for key, values in nightly.items():
        if key in {"ProtectSystem", "ReadWritePaths", "User", "UMask", "NoNewPrivileges"} or (
            key.startswith(("Protect", "Private", "Restrict", "SystemCall"))
        ):
            assert check.get(key) == values, key


def test_check_timer_runs_weekly_after_the_night() -> None:
    timer = unit_settings(CHECK_TIMER)
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
