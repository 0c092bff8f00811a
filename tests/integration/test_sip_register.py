"""
REGISTER with digest authentication from sipp, many users, against a
running twistd communigate.
"""

import os
import subprocess
import urllib.request

import pytest

from communigate.admin.client import CLIClient

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")


def cli(server, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return [client.command(line) for line in lines]


def sipp(workdir, scenario, server, *extra, timeout=60):
    return subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-i", "127.0.0.1", "-p", "0",
         "-nostdin", "-default_behaviors", "all,-bye", "-trace_err", "-timeout", "30s", "-timeout_error", *extra,
         f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=timeout,
    )


@pytest.fixture
def users(live_server, tmp_path):
    count = 50
    replies = cli(
        live_server,
        # sipp reads only the first challenge and knows only MD5.
        "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
        *(f"CREATEACCOUNT user{i} {{Password = pw{i};}}" for i in range(count)),
    )
    assert all(code == 200 for code, _ in replies)
    (tmp_path / "users.csv").write_text(
        "SEQUENTIAL\n"
        + "".join(f"user{i};example.com;[authentication username=user{i} password=pw{i}]\n" for i in range(count))
    )
    return count


def test_sipp_registers_many_users_with_digest_auth(live_server, users, tmp_path):
    done = sipp(tmp_path, "register.xml", live_server, "-inf", "users.csv", "-m", str(users), "-r", "40")
    assert done.returncode == 0, "".join(p.read_text() for p in tmp_path.glob("*_errors.log"))
    with CLIClient.connect(f"tcp:127.0.0.1:{live_server.cli_port}") as client:
        client.login("postmaster", live_server.postmaster_password)
        code, text = client.command("GETACCOUNTREGISTRATIONS user7")
    assert code == 201 and "sip:user7@127.0.0.1" in text
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{live_server.http_port}/metrics", timeout=10).read().decode()
    assert f"communigate_sip_registrations {float(users)}" in metrics
    assert 'communigate_sip_messages_total{direction="in",kind="REGISTER",transport="udp"}' in metrics
    assert 'communigate_sip_messages_total{direction="out",kind="2xx",transport="udp"}' in metrics


def test_a_wrong_password_is_refused(live_server, tmp_path):
    cli(live_server, "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}", "CREATEACCOUNT eve {Password = right;}")
    (tmp_path / "users.csv").write_text("SEQUENTIAL\neve;example.com;[authentication username=eve password=wrong]\n")
    done = sipp(tmp_path, "register.xml", live_server, "-inf", "users.csv", "-m", "1")
    assert done.returncode != 0
    (errors,) = tmp_path.glob("register_*_errors.log")
    assert "403 Authentication failed" in errors.read_text()
