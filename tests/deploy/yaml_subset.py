"""No YAML library is a dependency, so the Kubernetes examples and the alert rules are read by
`read_yaml`: the subset of YAML they are written in (block mappings and sequences, flat flow
collections, plain, quoted and integer scalars, comments). Anything else raises, so the files
cannot drift into syntax the reader would misread; where PyYAML is installed, a test checks
both read the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.deploy.common import DEPLOY, KUBERNETES

# --- the Kubernetes examples and the alert rules ---------------------------------------------
#
# No YAML library is a dependency, so the manifests and the alert rules are read by read_yaml:
# the subset of YAML they are written in (block mappings and sequences, flat flow collections,
# plain, quoted and integer scalars, comments). Anything else raises, so the files cannot drift
# into syntax the reader would misread; where PyYAML is installed, a test checks both read the
# same.

BUCKET_JOB = DEPLOY / "kubernetes-bucket-job.yaml"
JOBS = [KUBERNETES, BUCKET_JOB]

Line = tuple[int, str]  # (indent, text with the comment cut off)
KEY = re.compile(r"[A-Za-z0-9_./-]+")
INT = re.compile(r"-?(0|[1-9][0-9]*)")
# Plain scalars YAML 1.1 readers take as booleans, floats, octals or dates: written quoted here.
AMBIGUOUS = re.compile(
    r"(yes|no|on|off|y|n|true|false|null)|[-+]?[0-9_]*\.[0-9]+|0[0-9]+|\d{4}-\d\d-\d\d.*",
    re.IGNORECASE,
)
# Credentials by name: never a literal `value:` in the manifest (paths such as *_FILE are not).
CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|ACCOUNT_KEY|SERVICE_ACCOUNT")
QUANTITY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
# The volume types the "restricted" Pod Security Standard admits.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def strip_comment(line: str) -> str:
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


def flow(text: str) -> Any:
    """A flat flow collection: [a, b] or {k: v, ...}, of scalars only."""
    closing = {"[": "]", "{": "}"}[text[0]]
    inner = text[1:-1].strip()
    if not text.endswith(closing) or any(c in inner for c in "[]{}"):
        raise ValueError(f"not a flat flow collection: {text!r}")
    parts = [part.strip() for part in inner.split(",")] if inner else []
    if closing == "]":
        return [scalar(part) for part in parts]
    pairs = [entry(part) for part in parts]
    if any(not value for _, value in pairs):
        raise ValueError(f"a key without a value in {text!r}")
    return {key: scalar(value) for key, value in pairs}


def scalar(text: str) -> Any:
    if text[0] in "[{":
        return flow(text)
    if text[0] == '"':
        return json.loads(text)  # a double-quoted scalar without YAML-only escapes
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'"):
            raise ValueError(f"unterminated quote: {text!r}")
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if INT.fullmatch(text):
        return int(text)
    special = text[0] in "&*!|>%@`?:,]}" or (text[0] == "-" and not text.startswith("--"))
    if special or AMBIGUOUS.fullmatch(text):
        raise ValueError(f"not in the YAML subset read here: {text!r}")
    if ": " in text or text.endswith(":") or " #" in text:
        raise ValueError(f"not a plain scalar: {text!r}")
    return text


def entry(text: str) -> tuple[str, str]:
    """`key: value` (or `key:`) as (key, value text)."""
    key, sep, value = text.partition(": ")
    if not sep and text.endswith(":"):
        key, sep = text[:-1], ":"
    if not sep or not KEY.fullmatch(key):
        raise ValueError(f"not `key: value`: {text!r}")
    return key, value.strip()


def is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def nested(lines: list[Line], i: int, indent: int) -> tuple[Any, int]:
    """The block under a `key:` or a `-` at `indent`: deeper, or a sequence at that indent."""
    if i < len(lines):
        sequence_here = lines[i][0] == indent and is_item(lines[i][1])
        if lines[i][0] > indent or sequence_here:
            return block(lines, i)
    return None, i


def sequence(lines: list[Line], i: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and is_item(lines[i][1]):
        rest = lines[i][1][1:]
        body = rest.lstrip()
        if not body:
            item, i = nested(lines, i + 1, indent + 1)
        elif body[0] not in "\"'[{" and (": " in body or body.endswith(":")):
            # `- key: value`: a mapping whose keys line up with this first one.
            lines[i] = (indent + 1 + len(rest) - len(body), body)
            item, i = mapping(lines, i, lines[i][0])
        else:
            item, i = scalar(body), i + 1
        items.append(item)
    return items, i


def mapping(lines: list[Line], i: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not is_item(lines[i][1]):
        key, value = entry(lines[i][1])
        if key in result:
            raise ValueError(f"key {key!r} twice")
        if value:
            result[key], i = scalar(value), i + 1
        else:
            result[key], i = nested(lines, i + 1, indent)
    if i < len(lines) and lines[i][0] > indent:
        raise ValueError(f"unexpected indentation: {lines[i][1]!r}")
    return result, i


def block(lines: list[Line], i: int) -> tuple[Any, int]:
    indent, text = lines[i]
    return sequence(lines, i, indent) if is_item(text) else mapping(lines, i, indent)


def read_yaml(text: str) -> Any:
    """One YAML document of the subset described above, as PyYAML's safe_load reads it."""
    lines: list[Line] = []
    for raw in text.splitlines():
        content = strip_comment(raw).rstrip()
        if not content.strip():
            continue
        stripped = content.lstrip(" ")
        if stripped[0] == "\t" or stripped in ("---", "..."):
            raise ValueError(f"not in the YAML subset read here (a tab, or documents): {raw!r}")
        lines.append((len(content) - len(stripped), stripped))
    if not lines:
        return None
    value, end = block(lines, 0)
    if end != len(lines):
        raise ValueError(f"unexpected indentation: {lines[end][1]!r}")
    return value


def read_job(path: Path) -> dict[str, Any]:
    job = read_yaml(path.read_text())
    assert isinstance(job, dict)
    return job


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod = job["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod
