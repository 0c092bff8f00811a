"""
The CLI protocol over a real socket, driven by CGPCLI, the CommuniGate
vendor's Python client library, against C{twistd communigate}.
"""

import socket

import pytest
from CGPCLI import Server
from CGPCLI.Errors import CommandFailedError, FailedLogin


@pytest.fixture
def cli(live_server):
    client = Server("127.0.0.1", live_server.cli_port)
    client.connect()
    client.login("postmaster", live_server.postmaster_password)
    yield client
    client.disconnect()


def test_cgpcli_creates_and_lists_accounts(cli):
    cli.create_account("alice@example.com", settings={"Password": "s3cret", "RealName": "Alice"})
    cli.create_account("bob", settings={"Password": "pw"})
    accounts = cli.list_accounts("example.com")["body"]
    assert set(accounts) == {"alice", "bob", "postmaster"}
    assert cli.get_account_settings("alice")["body"] == {"RealName": "Alice"}
    assert cli.verify_account_password("alice", "s3cret")["header"] == "200"


def test_cgpcli_reports_errors_as_command_failures(cli):
    with pytest.raises(CommandFailedError, match="501"):
        cli.create_account("postmaster")
    # the session survives the error
    assert cli.list_domains()["body"] == ["example.com"]


def test_cgpcli_settings_inheritance_round_trip(cli):
    cli.create_account("carol", settings={"Password": "x"})
    cli.update_account_defaults({"MaxSignalContacts": "3"}, "example.com")
    cli.update_account_settings("carol", {"MaxSignalContacts": "7"})
    assert cli.get_account_effective_settings("carol")["body"]["MaxSignalContacts"] == "7"
    cli.update_account_settings("carol", {"MaxSignalContacts": "default"})
    assert cli.get_account_effective_settings("carol")["body"]["MaxSignalContacts"] == "3"


def test_cgpcli_groups_forwarders_and_telnums(cli):
    cli.create_account("dave", settings={"Password": "x"})
    cli.create_group("sales", settings={"Members": ["dave"]})
    assert cli.execute_command("GETGROUP sales")["body"] == {"Members": ["dave"]}
    cli.create_forwarder("info", "dave@example.com")
    assert cli.execute_command("LISTFORWARDERS")["body"] == ["info"]
    cli.set_account_telnums("dave", ["15551234"])
    assert cli.execute_command("LISTSERVERTELNUMS")["body"] == {"15551234": "dave@example.com"}


def test_cgpcli_wrong_password_fails_login(live_server):
    client = Server("127.0.0.1", live_server.cli_port)
    client.connect()
    with pytest.raises(FailedLogin):
        client.login("postmaster", "wrong")


def test_a_huge_line_closes_the_connection_and_the_server_goes_on(live_server, cli):
    with socket.create_connection(("127.0.0.1", live_server.cli_port)) as raw:
        raw.recv(1024)
        chunk = b"x" * 65536
        try:
            for _ in range(64 * 16):  # up to 64 MiB, stops when the server hangs up
                raw.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw.settimeout(10)
        try:
            rest = raw.recv(65536)
            while rest:
                rest = raw.recv(65536)
        except ConnectionResetError:
            pass
    assert cli.list_domains()["body"] == ["example.com"]


def test_garbage_bytes_get_an_error_and_a_close(live_server):
    with socket.create_connection(("127.0.0.1", live_server.cli_port)) as raw:
        raw.settimeout(10)
        raw.recv(1024)
        raw.sendall(b"\xff\xfe\x00garbage\r\n")
        reply = b""
        while chunk := raw.recv(1024):
            reply += chunk
    assert reply.startswith(b"501 ")


def test_five_wrong_passwords_delay_the_next_attempt_from_that_address(live_server):
    import time

    with socket.create_connection(("127.0.0.1", live_server.cli_port)) as raw:
        raw.settimeout(30)
        reader = raw.makefile("rb")
        reader.readline()
        for _ in range(5):
            raw.sendall(b"USER postmaster\r\nPASS wrong\r\n")
            assert reader.readline().startswith(b"300 ")
            assert reader.readline().startswith(b"515 ")
        started = time.monotonic()
        raw.sendall(f"USER postmaster\r\nPASS {live_server.postmaster_password}\r\n".encode())
        assert reader.readline().startswith(b"300 ")
        assert reader.readline().startswith(b"200 ")
        assert time.monotonic() - started >= 1.5  # the first delay is 2 s


def test_the_perl_cgp_cli_login_sequence_works(live_server):
    # The vendor's Perl CGP::CLI sends APOP whenever the banner carries a
    # <...@...> challenge; otherwise USER (wants 300), PASS (wants 200 or
    # 201), then INLINE, with bare LF line ends.
    import re

    with socket.create_connection(("127.0.0.1", live_server.cli_port)) as raw:
        raw.settimeout(10)
        reader = raw.makefile("rb")
        banner = reader.readline().decode()
        assert banner.startswith("200 ") and not re.search(r"<.*@.*>", banner)
        raw.sendall(b"USER postmaster\n")
        assert reader.readline().startswith(b"300 ")
        raw.sendall(f"PASS {live_server.postmaster_password}\n".encode())
        assert reader.readline().startswith(b"200 ")
        raw.sendall(b"INLINE\nListDomains\nQUIT\n")
        assert reader.readline().startswith(b"200 ")
        assert reader.readline() == b"201 (example.com)\r\n"
        assert reader.readline().startswith(b"200 ")
