"""The Prometheus alert rules (deploy/prometheus-alerts.yaml): complete, on metrics the tool writes,
checked and unit-tested by promtool where it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.common import ALERTS, METRICS_SOURCE
from tests.deploy.yaml_subset import read_yaml

# --- the alert rules ----------------------------------------------------------------------------

# The sync watermark's gauge (issue 15), with the labels of the others (command, shard).
_WATERMARK = "osvi_archiver_sync_watermark_timestamp_seconds"
_METRIC_NAME = re.compile(r"\bosvi_archiver_[a-z_]+\b")


def _alert_rules() -> list[dict[str, Any]]:
    groups = read_yaml(ALERTS.read_text())["groups"]
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
    # 75 (another run held the archive) and 124 (stopped at its deadline) need nobody.
    assert exprs["OsviArchiverExitCode"] == "osvi_archiver_exit_code != 0 != 75 != 124"
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
    "error, 69: unreachable; not 75 or 124, after which the next run continues); the run "
    "report in the archive and the log say more."
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
    # A backfill overlapping the nightly (75), then a run stopped at its deadline (124): no
    # ticket; then a code a person must act on (4): one.
    tests.append(
        {
            "interval": "1m",
            "input_series": [
                {"series": f"osvi_archiver_exit_code{_SERIES}", "values": "75x20 124x20 4x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "OsviArchiverExitCode"},
                {"eval_time": "35m", "alertname": "OsviArchiverExitCode"},
                {
                    "eval_time": "50m",
                    "alertname": "OsviArchiverExitCode",
                    "exp_alerts": [
                        _alert(
                            "OsviArchiverExitCode",
                            "ticket",
                            "osvi-archiver sync on host:9100 exited 4",
                            _EXIT_CODE_DESCRIPTION,
                        )
                    ],
                },
            ],
        }
    )
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
