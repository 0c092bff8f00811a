"""
communigate-admin on a data directory: commands from argv, scripts in one
transaction, exit statuses.
"""

import io
import sqlite3

import pytest
from twisted.internet.task import Clock

from communigate.admin.tool import Progress, main
from communigate.config import Config
from communigate.server import build_server
from communigate.storage.sqlite import DATABASE_NAME


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    server = build_server(Config(data_dir=str(path), domain="example.com"), Clock(), modules=[])
    server.context.store.close()
    return str(path)


def admin(*argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdin=io.StringIO(stdin), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_a_command_is_the_words_after_the_options_joined_by_spaces(data_dir):
    status, out, err = admin(
        "--data", data_dir, "CREATEACCOUNT", "alice@example.com", "{Password=secret;}"
    )
    assert (status, out, err) == (0, "", "")
    status, out, _ = admin("--data", data_dir, "LISTACCOUNTS")
    assert out == "{alice = MultiMailbox; postmaster = MultiMailbox;}\n"


def test_quoted_arguments_pass_through_as_typed(data_dir):
    admin("--data", data_dir, "CREATEACCOUNT", "bob")
    status, _, err = admin("--data", data_dir, "SETACCOUNTTELNUMS", "bob", '("+15553837461")')
    assert status == 0, err
    assert admin("--data", data_dir, "LISTSERVERTELNUMS")[1] == '{"+15553837461" = bob@example.com;}\n'


def test_a_refused_command_exits_non_zero_with_the_reason(data_dir):
    status, out, err = admin("--data", data_dir, "CREATEACCOUNT", "postmaster")
    assert status == 1
    assert out == ""
    assert "postmaster@example.com is already an account" in err


def test_a_script_runs_in_one_transaction(data_dir, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text(
        "CREATEACCOUNT a1 {Password=x;}\n"
        "\n"
        "CREATEACCOUNT a2\n"
        "CREATEACCOUNT a1\n"
    )
    status, _, err = admin("--data", data_dir, "--file", str(script))
    assert status == 1
    assert "line 4:" in err and "nothing was changed" in err
    assert admin("--data", data_dir, "LISTACCOUNTS")[1] == "{postmaster = MultiMailbox;}\n"


def test_a_script_from_stdin_prints_each_result(data_dir):
    status, out, err = admin(
        "--data", data_dir, stdin="CREATEDOMAIN other.com\nLISTDOMAINS\nMAINDOMAINNAME\n"
    )
    assert status == 0, err
    assert out == "(example.com, other.com)\nexample.com\n"


def test_a_missing_data_directory_is_refused_without_creating_it(tmp_path):
    status, _, err = admin("--data", str(tmp_path / "nothing"), "LISTDOMAINS")
    assert status == 2
    assert "holds no communigate store" in err
    assert not (tmp_path / "nothing").exists()


def test_a_store_from_a_newer_release_is_refused_and_left_alone(data_dir):
    path = f"{data_dir}/{DATABASE_NAME}"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    status, _, err = admin("--data", data_dir, "LISTDOMAINS")
    assert status == 2
    assert "schema version 99" in err
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 99


def test_a_command_and_a_file_together_are_a_usage_error(data_dir):
    with pytest.raises(SystemExit) as exited:
        admin("--data", data_dir, "--file", "x", "LISTDOMAINS")
    assert exited.value.code == 2


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_on_a_terminal_only():
    ticks = iter(range(100))
    terminal = FakeTerminal()
    progress = Progress(4, terminal, clock=lambda: next(ticks))
    for done in range(1, 5):
        progress.step(done)
    assert "4/4" in terminal.getvalue() and terminal.getvalue().endswith("\n")
    plain = io.StringIO()
    quiet = Progress(4, plain)
    quiet.step(4)
    assert plain.getvalue() == ""


def test_a_router_table_file_replaces_the_table_whole(data_dir, tmp_path):
    table = tmp_path / "routes.txt"
    table.write_text("; PSTN\n<00(6-15d)*> = +*@telnum\nS:<+*@telnum> = 00*@pstn\nS:<*@pstn> = gatewaycaller{*}#postmaster\n")
    status, _, err = admin("--data", data_dir, "--router-table", str(table))
    assert status == 0, err
    assert admin("--data", data_dir, "ROUTE", "004930123456", "signal")[1] == (
        '(PBX, postmaster@example.com, "gatewaycaller{004930123456}")\n'
    )
    table.write_text("<ok> = x\n<+(6-15d*> = x\n")
    status, _, err = admin("--data", data_dir, "--router-table", str(table))
    assert status == 1 and "line 2" in err
    assert "gatewaycaller" in admin("--data", data_dir, "GETROUTERTABLE")[1]
