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
from archiver.settings import Settings
from archiver.shard import resolve_shard

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


# --- the Kubernetes bucket example ------------------------------------------------------------
#
# No YAML library is a dependency, so the manifests are read by _read_yaml: the subset of YAML
# they are written in (block mappings and sequences, flat flow collections, plain, quoted and
# integer scalars, comments). Anything else raises, so the file cannot drift into syntax the
# reader would misread; where PyYAML is installed, a test checks both read the same.

BUCKET_JOB = DEPLOY / "kubernetes-bucket-job.yaml"

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


def _bucket_job() -> dict[str, Any]:
    job = _read_yaml(BUCKET_JOB.read_text())
    assert isinstance(job, dict)
    return job


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


def test_yaml_reader_reads_both_kubernetes_examples_as_pyyaml_does() -> None:
    old = _read_yaml(KUBERNETES.read_text())
    # What the line-by-line test of the older example reads, the reader reads too.
    (container,) = old["spec"]["template"]["spec"]["containers"]
    _assert_kubernetes_container(container)
    yaml = pytest.importorskip("yaml")
    for path in (KUBERNETES, BUCKET_JOB):
        assert _read_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path.name
    for document in _commented_secret_documents():
        assert _read_yaml(document) == yaml.safe_load(document), document


def test_bucket_job_is_an_indexed_job_with_one_shard_per_index() -> None:
    job = _bucket_job()
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


def test_bucket_job_failure_policy_follows_the_exit_codes() -> None:
    job = _bucket_job()
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


def test_bucket_job_security_context_meets_the_restricted_standard() -> None:
    job = _bucket_job()
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
