"""No deploy file holds a token or passes one on a command line; the env example holds a
placeholder."""

from __future__ import annotations

import re

import pytest

from archiver.cli.parser import build_parser
from tests.deploy.common import (
    ALERTS,
    ARCHIVE,
    CHECK_SERVICE,
    CHECK_TIMER,
    CRONTAB,
    DEPLOY,
    ENV_EXAMPLE,
    KUBERNETES,
    PLACEHOLDER_TOKEN,
    SERVICE,
    TIMER,
)
from tests.deploy.yaml_subset import BUCKET_JOB

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
