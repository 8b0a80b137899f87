"""The ways from a checkout onto a server (issue 24), each tried for real in a fresh folder:
`make dist` builds the wheel and the sdist; `make install-system` makes a venv under PREFIX and
links BINDIR/osvi-archiver; `pipx install` and `uv tool install` take the wheel, pinned by
constraints.txt. Each installed tool then runs the demo against the embedded fake service, and
the systemd unit as shipped verifies against the installed program.

Slow (building, installing): `make test-install`, which also installs build, pipx and uv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.common import PROGRAM, ROOT, SERVICE, TIMER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent  # the project's .venv/bin: make, pipx and uv run from it


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and not line.startswith("#"):
            pins[name.strip().lower()] = version.strip()
    return pins


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def _fresh_env(home: Path, **more: str) -> dict[str, str]:
    """A user with nothing of ours: an empty home, a PATH without the project's venv."""
    keep = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "LANG", "LC_"))}
    return {**keep, "HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", **more}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` in a copy of the checkout (its tracked files), with the project's .venv."""
    copy = tmp_path_factory.mktemp("checkout")
    tracked = _run(["git", "ls-files", "-z"], ROOT).split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    venv = BIN.parent
    stamp = venv / ".installed-stamp"
    _run(["make", f"VENV={venv}", "-o", str(stamp), "dist"], copy)
    dist = copy / "dist"
    wheels = sorted(dist.glob("osvi_archiver-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    assert len(list(dist.glob("osvi_archiver-*.tar.gz"))) == 1  # the sdist beside it
    return wheels[0]


def _works(program: Path, home: Path) -> None:
    """The installed tool: its version, the versions CI tested, and a whole demo run."""
    env = _fresh_env(home)
    assert _run([str(program), "--version"], home, env).startswith("osvi-archiver ")
    python = program.resolve().parent / "python"
    versions = "import aiohttp, pydantic_settings as p; print(aiohttp.__version__, p.__version__)"
    found = _run([str(python), "-c", versions], home, env)
    pins = _pins()
    assert found.split() == [pins["aiohttp"], pins["pydantic-settings"]]
    demo = home / "demo"
    demo.mkdir()
    _run([str(program), "demo"], demo, env)
    assert (demo / "demo-archive" / "manifest.json").is_file()


def test_make_install_system_makes_a_venv_and_a_link_that_the_unit_verifies_against(
    wheel: Path, tmp_path: Path
) -> None:
    prefix, bindir = tmp_path / "opt" / "osvi-archiver", tmp_path / "usr-local-bin"
    checkout = wheel.parent.parent
    _run(["make", f"PYTHON={sys.executable}", f"PREFIX={prefix}", f"BINDIR={bindir}",
          "install-system"], checkout)  # fmt: skip
    program = bindir / "osvi-archiver"
    assert program.is_symlink()
    assert program.resolve() == (prefix / "bin" / "osvi-archiver").resolve()
    _works(program, tmp_path)
    # Again (an upgrade): the same link, the venv reused.
    _run(["make", f"PYTHON={sys.executable}", f"PREFIX={prefix}", f"BINDIR={bindir}",
          "install-system"], checkout)  # fmt: skip
    assert program.resolve() == (prefix / "bin" / "osvi-archiver").resolve()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units"
    units.mkdir()
    (units / SERVICE.name).write_text(SERVICE.read_text().replace(PROGRAM, str(program)))
    (units / TIMER.name).write_text(TIMER.read_text())
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "LC_ALL": "C"}
    done = subprocess.run(
        ["systemd-analyze", "verify", str(units / SERVICE.name), str(units / TIMER.name)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "osvi-archiver" not in done.stdout + done.stderr


def test_install_system_without_a_wheel_says_to_build_one(tmp_path: Path) -> None:
    done = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), f"PREFIX={tmp_path / 'p'}",
         f"BINDIR={tmp_path / 'b'}", "install-system"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "run 'make dist' first" in done.stderr
    assert not (tmp_path / "p").exists()


# Each user-level installer: its own folders (environment), and how it takes the wheel pinned
# by constraints.txt ({wheel}, {constraints}); the program lands in the folder's bin/.
INSTALLERS = {
    "pipx": (
        {"PIPX_HOME": "pipx", "PIPX_BIN_DIR": "bin", "PIPX_MAN_DIR": "man"},
        ["install", "--pip-args=-c {constraints}", "{wheel}"],
    ),
    "uv": (
        {"UV_TOOL_DIR": "tools", "UV_TOOL_BIN_DIR": "bin", "UV_CACHE_DIR": "cache"},
        ["tool", "install", "{wheel}", "-c", "{constraints}"],
    ),
}


@pytest.mark.parametrize("installer", sorted(INSTALLERS))
def test_a_user_installer_takes_the_wheel_pinned_by_the_constraints(
    wheel: Path, tmp_path: Path, installer: str
) -> None:
    program = BIN / installer
    if not program.exists():
        pytest.skip(f"{installer} is not installed (make test-install installs it)")
    folders, args = INSTALLERS[installer]
    env = _fresh_env(tmp_path, **{name: str(tmp_path / sub) for name, sub in folders.items()})
    values = {"wheel": str(wheel), "constraints": str(ROOT / "constraints.txt")}
    _run([str(program), *(arg.format(**values) for arg in args)], tmp_path, env)
    _works(tmp_path / "bin" / "osvi-archiver", tmp_path)


def test_install_system_with_relative_folders_links_to_where_it_installed(wheel: Path) -> None:
    """PREFIX=opt BINDIR=bin, as typed: the link names the venv by its absolute path."""
    checkout = wheel.parent.parent
    _run(["make", f"PYTHON={sys.executable}", "PREFIX=rel/opt", "BINDIR=rel/bin",
          "install-system"], checkout)  # fmt: skip
    program = checkout / "rel" / "bin" / "osvi-archiver"
    assert Path(os.readlink(program)).is_absolute()
    assert program.resolve() == (checkout / "rel" / "opt" / "bin" / "osvi-archiver").resolve()
    assert _run([str(program), "--version"], checkout).startswith("osvi-archiver ")
