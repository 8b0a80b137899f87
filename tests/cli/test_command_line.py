"""The command line as cron lines and people type it (cli/parser.py, config/token_and_file.py): no
abbreviations, suggestions, options before the command, --help, completion, the token from a
file and the default config file."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import pytest

from archiver.cli.main import main
from archiver.config.settings import load_settings, require_token
from archiver.config.token_and_file import token_file_warnings
from archiver.errors import UsageError
from archiver.state.database import State

TOKEN = "tok-0123456789abcd"


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_an_abbreviated_option_is_refused_with_the_full_one_suggested(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(["run", "--concurren", "4", "-"], capsys)
    assert "unrecognized arguments: --concurren (did you mean --concurrency?)" in err
    err = usage_error(["sync", "--outt", "x"], capsys)
    assert "did you mean --out?" in err


def test_an_option_before_its_command_is_named_as_such(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(["--out", "x", "run", "-"], capsys)
    assert "--out is an option of the command" in err
    assert "osvi-archiver run --out" in err
    err = usage_error(["--concurren", "4", "run"], capsys)
    assert "did you mean --concurrency, after the command?" in err
    # The options of both places still work before the command.
    assert "COMMAND" in usage_error(["-v", "--log-format", "json"], capsys)


def test_help_names_each_options_variable_and_every_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--help"], ["run", "--help"], ["sync", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "69 ", "70 ", "75 ", "124 ", "129/130/143"):
            assert f"\n  {code}" in out, (argv, code)
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "env OSVI_CONCURRENCY" in out
    assert "env OSVI_OUT_DIR" in out


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_is_generated_from_the_parser(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("--max-outage", "--store-endpoint", "--retry-failed", "verify", "sync"):
        assert word in script


def test_the_token_comes_from_a_file_without_its_line_break(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    settings = load_settings({}, config_path=None, environ={"OSVI_API_TOKEN_FILE": str(path)})
    assert settings.token_value() == TOKEN
    # systemd's LoadCredential=osvi-api-token:...: no variable to set.
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "osvi-api-token").write_text(TOKEN)
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert load_settings({}, config_path=None, environ=environ).token_value() == TOKEN
    # OSVI_API_TOKEN first.
    environ["OSVI_API_TOKEN"] = "other-token-000000"
    assert load_settings({}, config_path=None, environ=environ).token_value() == (
        "other-token-000000"
    )
    assert token_file_warnings({"OSVI_API_TOKEN_FILE": str(path)}) == []
    path.chmod(0o644)
    [warning] = token_file_warnings({"OSVI_API_TOKEN_FILE": str(path)})
    assert "chmod 600" in warning


def test_a_token_file_that_cannot_be_read_is_a_usage_error_where_a_token_is_needed(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "none"
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    config = tmp_path / "config.toml"
    config.write_text(f'api_token = "{TOKEN}"\n')
    config.chmod(0o600)
    for path, reason in ((missing, r"cannot be read"), (big, "too large"), (tmp_path, "regular")):
        environ = {"OSVI_API_TOKEN_FILE": str(path)}
        settings = load_settings({}, config_path=None, environ=environ)  # status needs none
        with pytest.raises(UsageError, match=rf"token file {path} .*{reason}"):
            require_token(settings)
        # The file named wins over the config file's token: never another token silently.
        settings = load_settings({}, config_path=str(config), environ=environ)
        with pytest.raises(UsageError, match=reason):
            require_token(settings)
    two_lines = tmp_path / "two"
    two_lines.write_text("abc\ndef\n")
    with pytest.raises(UsageError, match="line break"):
        load_settings({}, config_path=None, environ={"OSVI_API_TOKEN_FILE": str(two_lines)})


def test_commands_that_need_no_token_run_beside_an_unreadable_token_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OSVI_API_TOKEN", raising=False)
    monkeypatch.setenv("OSVI_API_TOKEN_FILE", str(tmp_path / "no-such-token"))
    out = tmp_path / "archive"
    with State(out):
        pass
    ids = tmp_path / "ids.txt"
    ids.write_text("11111111-1111-4111-8111-111111111111\n")
    assert main(["status", "--out", str(out)]) == 0
    assert main(["verify", "--out", str(out)]) == 0
    assert main(["run", "--dry-run", "--out", str(out), str(ids)]) == 0
    assert "token file" not in capsys.readouterr().err
    assert main(["run", "--out", str(out), str(ids)]) == 2
    assert "no-such-token (from OSVI_API_TOKEN_FILE) cannot be read" in capsys.readouterr().err


def test_the_default_config_file_is_the_xdg_one(tmp_path: Path) -> None:
    folder = tmp_path / "xdg" / "osvi-archiver"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("concurrency = 3\n")
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert load_settings({}, config_path=None, environ=environ).concurrency == 3
    home = {"HOME": str(tmp_path / "home")}
    (tmp_path / "home" / ".config" / "osvi-archiver").mkdir(parents=True)
    (tmp_path / "home" / ".config" / "osvi-archiver" / "config.toml").write_text(
        "concurrency = 5\n"
    )
    assert load_settings({}, config_path=None, environ=home).concurrency == 5
    # OSVI_CONFIG and --config come first; a relative XDG_CONFIG_HOME is ignored.
    other = tmp_path / "other.toml"
    other.write_text("concurrency = 7\n")
    assert load_settings({}, config_path=str(other), environ=environ).concurrency == 7
    relative = {"XDG_CONFIG_HOME": "rel", **home}
    assert load_settings({}, config_path=None, environ=relative).concurrency == 5


def test_a_fifo_empty_or_odd_token_file_is_a_clear_usage_error(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # would block an open() until a writer came
    with pytest.raises(UsageError, match="not a regular file"):
        require_token(
            load_settings({}, config_path=None, environ={"OSVI_API_TOKEN_FILE": str(fifo)})
        )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        require_token(
            load_settings({}, config_path=None, environ={"OSVI_API_TOKEN_FILE": str(empty)})
        )
    spaced = tmp_path / "spaced"
    spaced.write_text("abc def\n")
    with pytest.raises(UsageError, match=f"from the token file {spaced}"):
        load_settings({}, config_path=None, environ={"OSVI_API_TOKEN_FILE": str(spaced)})
    # Not read (OSVI_API_TOKEN wins): no warning about its mode.
    loose = tmp_path / "loose"
    loose.write_text(TOKEN)
    loose.chmod(0o644)
    environ = {"OSVI_API_TOKEN": TOKEN, "OSVI_API_TOKEN_FILE": str(loose)}
    assert token_file_warnings(environ) == []


def test_short_options_and_a_double_dash_before_the_command_are_argparses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(["-vq", "nonsense"], capsys)
    assert "no command 'nonsense'; the commands: run, sync," in err
    assert "before the command" not in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["rn", "x"], "no command 'rn' (did you mean run?)"),
        (["backup"], "no command 'backup' (did you mean run?)"),
        (["--config", "c.toml", "ls"], "no command 'ls' (did you mean list?)"),
        (["run", "--conc", "3"], "--conc (did you mean --concurrency?)"),  # not --config
        (["run", "--transfers", "3"], "--transfers (did you mean --concurrency?)"),
        (
            ["run", "--retries", "3"],
            "--retries (did you mean --max-attempts?)",
        ),  # not --retry-failed
        (["run", "--stats", "5s"], "--stats (did you mean --status-interval?)"),  # not --state-dir
        (["run", "-P"], "-P (did you mean --progress always?)"),
        # the unknown option's value is not shown as an argument of its own
        (["sync", "--retries", "3"], "arguments: --retries (did you mean --max-attempts?)"),
        (["sync", "--max-age", "3d"], "--max-age (did you mean --since?)"),  # not --max-outage
        (["run", "--max-age", "3d"], "unrecognized arguments: --max-age"),  # run has no --since
        (["run", "--include", "*.csv"], "unrecognized arguments: --include"),  # no guess
        (["run", "--concurency", "3"], "--concurency (did you mean --concurrency?)"),
    ],
)
def test_a_usage_error_is_one_line_with_what_was_meant_then_where_help_is(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    err = usage_error(argv, capsys)
    lines = err.splitlines()
    assert len(lines) == 2, err  # no usage block
    assert said in lines[0], lines[0]
    if argv[-1] == "3":
        assert not lines[0].endswith(" 3"), lines[0]
    if "did you mean" not in said:
        assert "did you mean" not in lines[0]
    assert lines[0].startswith("osvi-archiver")
    assert lines[1].startswith("see 'osvi-archiver")
    assert lines[1].endswith(" --help'")


def test_a_usage_error_under_json_logs_is_one_fatal_event(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    err = usage_error(["run", "--log-format", "json", "--retries", "3"], capsys)
    [line] = err.splitlines()
    event = json.loads(line)
    assert (event["event"], event["exit_code"], event["level"]) == ("fatal", 2, "ERROR")
    assert "--retries (did you mean --max-attempts?)" in event["message"]
    monkeypatch.setenv("OSVI_LOG_FORMAT", "json")
    [line] = usage_error(["rn"], capsys).splitlines()
    assert json.loads(line)["event"] == "fatal"


@pytest.mark.parametrize("command", ["sync", "list", "check"])
@pytest.mark.parametrize("since", ["99999999999d", "0001-01-01T00:00:00+14:00"])
def test_a_since_out_of_range_is_a_usage_error_not_a_crash(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    since: str,
) -> None:
    monkeypatch.setenv("OSVI_API_TOKEN", TOKEN)
    monkeypatch.setenv("OSVI_BASE_URL", "http://127.0.0.1:9")  # never reached
    out = ["--out", str(tmp_path)] if command != "list" else []
    assert main([command, *out, "--since", since]) == 2
    assert "is out of range" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["run", "cal"], ["calls.csv"]),  # INPUT: files
        (["run", "--out", "arc"], ["archive-dir"]),  # folders only
        (["sync", "--state-dir", "arc"], ["archive-dir"]),
        (["run", "--config", "cal"], ["calls.csv"]),
        (["sync", "--log-file", "cal"], ["calls.csv"]),
        (["run", "--metrics-file", "cal"], ["calls.csv"]),
    ],
)
def test_bash_completes_files_and_folders_where_a_path_is_wanted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], expected: list[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "completion.bash"
    script.write_text(capsys.readouterr().out)
    (tmp_path / "archive-dir").mkdir()
    (tmp_path / "calls.csv").write_text("")
    line = " ".join(["osvi-archiver", *words])
    shell = (
        f"source {script}; COMP_WORDS=(osvi-archiver {' '.join(words)}); "
        f"COMP_CWORD={len(words)}; COMP_LINE='{line}'; COMP_POINT={len(line)}; "
        '_shtab_osvi_archiver; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.stdout.split() == expected, done.stderr


@pytest.mark.parametrize(
    "argv", [["run", "-"], ["sync", "--since", "1d"], ["status"], ["verify"], ["manifest"]]
)
def test_a_command_on_an_archive_without_out_is_a_usage_error_and_writes_nothing(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--out has no default: a forgotten one must not put recordings in the current folder."""
    monkeypatch.chdir(tmp_path)
    for name in ("OSVI_OUT_DIR", "OSVI_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    monkeypatch.setenv("OSVI_API_TOKEN", TOKEN)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err
    assert "OSVI_OUT_DIR" in err
    assert list(tmp_path.iterdir()) == []


def test_the_short_flags_people_reach_for(tmp_path: Path) -> None:
    from archiver.cli.parser import build_parser

    args = build_parser().parse_args(["run", "-o", str(tmp_path), "-j", "4", "-n", "calls.csv"])
    assert (args.out_dir, args.concurrency, args.dry_run) == (str(tmp_path), 4, True)
    args = build_parser().parse_args(["sync", "-o", "s3://b/p", "-j", "2", "-n"])
    assert (args.out_dir, args.concurrency, args.dry_run) == ("s3://b/p", 2, True)


def test_help_groups_every_option_and_names_values_alike() -> None:
    """Each command's --help in groups (input, destination, API and limits, what to archive,
    output and monitoring, bucket), none left in the catch-all but -h; a duration is a
    DURATION, a count N, a path PATH, wherever it is."""
    from archiver.cli.flags import HELP_GROUPS
    from archiver.cli.parser import build_parser

    parser = build_parser()
    titles = [title for title, _ in HELP_GROUPS]
    found = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    commands: dict[str, argparse.ArgumentParser] = dict(found)  # type: ignore[arg-type]
    for name, command in commands.items():
        if name in ("fake-server", "completion", "config"):
            continue
        for group in command._action_groups:
            dests = [action.dest for action in group._group_actions]
            if group.title not in titles:
                assert dests in ([], ["help"]), (name, group.title, dests)
        shown = [g.title for g in command._action_groups if g._group_actions]
        assert [t for t in shown if t in titles] == [t for t in titles if t in shown]  # in order
    run = commands["run"].format_help()
    for flag, metavar in [("--max-outage", "DURATION"), ("--read-timeout", "DURATION"),
                          ("--concurrency", "N"), ("--max-attempts", "N"), ("--bwlimit", "RATE"),
                          ("--metrics-file", "PATH"), ("--log-file", "PATH")]:  # fmt: skip
        assert f"{flag} {metavar}" in run, flag
    sync = commands["sync"].format_help()
    assert sync.index("what to archive:") < sync.index("bucket (")
    assert "--since TIME" in sync


def test_config_show_says_each_settings_value_and_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    config = tmp_path / "config.toml"
    config.write_text('max_outage = "10m"\nbwlimit = "off"\napi_token = "toml-token-0000000"\n')
    config.chmod(0o600)
    for name in ("OSVI_API_TOKEN", "OSVI_API_TOKEN_FILE", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OSVI_MAX_ATTEMPTS", "3")
    argv = ["config", "show", "--config", str(config), "-j", "4", "--json"]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["concurrency"] == {"value": "4", "from": "the flag --concurrency"}
    assert shown["max_attempts"] == {"value": "3", "from": "the environment (OSVI_MAX_ATTEMPTS)"}
    assert shown["max_outage"] == {"value": "10m", "from": f"the config file {config}"}
    assert shown["read_timeout"] == {"value": "1m", "from": "default"}
    assert shown["api_token"] == {"value": "***", "from": f"the config file {config}"}
    # The token from each of its other sources; never its value.
    token = tmp_path / "token"
    token.write_text("file-token-000000\n")
    token.chmod(0o600)
    monkeypatch.setenv("OSVI_API_TOKEN_FILE", str(token))
    assert main(["config", "show", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"the token file {token} (OSVI_API_TOKEN_FILE)" in out
    assert "file-token" not in out
    assert "toml-token" not in out
    monkeypatch.delenv("OSVI_API_TOKEN_FILE")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "osvi-api-token").write_text("cred-token-000000")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert main(["config", "show", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["api_token"]
    assert found == {
        "value": "***",
        "from": f"the token file {credentials / 'osvi-api-token'} ($CREDENTIALS_DIRECTORY)",
    }
    monkeypatch.setenv("OSVI_API_TOKEN", "env-token-0000000")
    assert main(["config", "show", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["api_token"]
    assert found == {"value": "***", "from": "the environment (OSVI_API_TOKEN)"}


def test_config_show_says_an_unreadable_token_file_wins_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    config = tmp_path / "config.toml"
    config.write_text('api_token = "toml-token-0000000"\n')
    config.chmod(0o600)
    monkeypatch.delenv("OSVI_API_TOKEN", raising=False)
    monkeypatch.setenv("OSVI_API_TOKEN_FILE", str(tmp_path / "missing"))
    assert main(["config", "show", "--config", str(config), "--json"]) == 0
    source = json.loads(capsys.readouterr().out)["api_token"]["from"]
    assert source.startswith("unusable: ")
    assert str(tmp_path / "missing") in source


def test_config_show_opens_no_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--log-file", str(tmp_path / "x.log")]) == 0
    assert "log_file" in capsys.readouterr().out
    assert not (tmp_path / "x.log").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["-o", "/data", "run", "x"], "-o is an option of the command"),
        (["-j", "4", "run"], "put it after the command (osvi-archiver run -j ...)"),
        (["run", "--status", "picked"], "--status (an option of sync, list, check, not of"),
    ],
)
def test_an_option_in_the_wrong_place_is_said_so(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    err = usage_error(argv, capsys)
    assert said in err.splitlines()[0]
    assert "did you mean" not in err


def test_fake_servers_help_shows_no_none_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fake-server", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out
    assert "--bandwidth RATE" in out
