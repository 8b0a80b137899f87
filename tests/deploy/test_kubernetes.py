"""The Kubernetes examples (deploy/kubernetes-*.yaml): Indexed Jobs, their exit-code policy,
secrets, the restricted security standard, read by the YAML subset reader (yaml_subset.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from archiver.archive.shard import resolve_shard
from archiver.config.settings import Settings
from tests.deploy.common import ALERTS, KUBERNETES, SERVICE, parse, unit_settings
from tests.deploy.yaml_subset import (
    BUCKET_JOB,
    CREDENTIAL_NAME,
    JOBS,
    QUANTITY,
    RESTRICTED_VOLUMES,
    pod_of,
    read_job,
    read_yaml,
)


def _bucket_job() -> dict[str, Any]:
    return read_job(BUCKET_JOB)


def _bucket_container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_of(job)["containers"]
    assert isinstance(container, dict)
    return container


def _bucket_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = {entry["name"]: entry for entry in container.get("env", [])}
    assert len(env) == len(container.get("env", [])), "an env variable set twice"
    return env


def _bucket_args(container: dict[str, Any]) -> argparse.Namespace:
    command = container["command"]
    assert command == ["osvi-archiver"]
    return parse([*command[1:], *container["args"]])


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
    return [read_yaml(document) for document in _commented_secret_documents()]


def _bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity)
    assert match, quantity
    return int(match[1]) * QUANTITY.get(match[2], 1)


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
        read_yaml(text)


def test_yaml_reader_reads_the_kubernetes_examples_and_alerts_as_pyyaml_does() -> None:
    yaml = pytest.importorskip("yaml")
    for path in (*JOBS, ALERTS):
        assert read_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path.name
    for document in _commented_secret_documents():
        assert read_yaml(document) == yaml.safe_load(document), document


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_is_an_indexed_job_with_one_shard_per_index(path: Path) -> None:
    job = read_job(path)
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
    assert pod_of(job)["restartPolicy"] == "Never"  # what podFailurePolicy requires


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
    assert "nodeName" not in pod_of(job)


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_failure_policy_follows_the_exit_codes(path: Path) -> None:
    job = read_job(path)
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
    pod = pod_of(job)
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
        if CREDENTIAL_NAME.search(name) and not name.endswith("_FILE"):
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
    job = read_job(path)
    pod = pod_of(job)
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
        assert set(volume) - {"name"} <= RESTRICTED_VOLUMES, volume
    assert not any("hostPort" in port for port in container.get("ports", []))


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_token_comes_from_a_secret_and_nothing_from_a_configmap(path: Path) -> None:
    job = read_job(path)
    pod = pod_of(job)
    container = _bucket_container(job)
    token = _bucket_env(container)["OSVI_API_TOKEN"]
    assert set(token) == {"name", "valueFrom"}
    assert set(token["valueFrom"]["secretKeyRef"]) >= {"name", "key"}
    for name, entry in _bucket_env(container).items():
        if CREDENTIAL_NAME.search(name) and not name.endswith("_FILE"):
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
    job = read_job(path)
    container = _bucket_container(job)
    assert container["image"] == "osvi-archiver:latest"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # The image's user is the pod's (tests/test_packaging.py checks the Dockerfile's USER).
    assert pod_of(job)["securityContext"]["runAsUser"] == 10001
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
    job = read_job(KUBERNETES)
    pod = pod_of(job)
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
    rules = read_job(KUBERNETES)["spec"]["podFailurePolicy"]["rules"]
    actions = {
        value: rule["action"] for rule in rules[1:] for value in rule["onExitCodes"]["values"]
    }
    assert actions[code] == actions[75] == "Count"
    # The bucket Job has no rule for it: the default, Count, all the same.
    bucket = read_job(BUCKET_JOB)["spec"]["podFailurePolicy"]["rules"]
    assert all(code not in rule.get("onExitCodes", {}).get("values", []) for rule in bucket)
    success = unit_settings(SERVICE)["SuccessExitStatus"][0].split()
    assert {str(code), "75", "143"} <= set(success)


def test_kubernetes_examples_pass_the_schema_validator() -> None:
    """kubernetes-validate (PyPI; it carries the API's JSON schemas, no cluster needed), when
    installed: strict, so a misspelt field fails, at the oldest version the Jobs need and the
    newest it knows."""
    validate = pytest.importorskip("kubernetes_validate")
    for path in JOBS:
        for version in ("1.29.0", validate.utils.latest_version()):
            validate.validate(read_job(path), version, strict=True)
