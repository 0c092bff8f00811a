"""
communigate-admin next to a running server: on its data directory and over
its CLI listener.
"""

import os
import subprocess
import sys
import time

from CGPCLI import Server

ADMIN = os.path.join(os.path.dirname(sys.executable), "communigate-admin")


def run_admin(*argv, password=None):
    env = dict(os.environ)
    if password is not None:
        env["COMMUNIGATE_PASSWORD"] = password
    return subprocess.run([ADMIN, *argv], capture_output=True, text=True, env=env, timeout=60)


def test_a_running_server_sees_a_change_made_on_its_data_directory(live_server):
    client = Server("127.0.0.1", live_server.cli_port)
    client.connect()
    client.login("postmaster", live_server.postmaster_password)
    try:
        done = run_admin("--data", live_server.data_dir, "CREATEACCOUNT", "eve", "{Password=pw;}")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 1.0
        seen = False
        while not seen and time.monotonic() < deadline:
            seen = "eve" in client.list_accounts("example.com")["body"]
        assert seen
        assert client.verify_account_password("eve", "pw")["header"] == "200"
    finally:
        client.disconnect()


def test_the_admin_tool_scripts_a_running_server_over_the_cli(live_server):
    endpoint = f"tcp:127.0.0.1:{live_server.cli_port}"
    done = run_admin(
        "--server", endpoint, "--user", "postmaster", "CREATEACCOUNT", "frank",
        password=live_server.postmaster_password,
    )
    assert done.returncode == 0, done.stderr
    listed = run_admin("--server", endpoint, "LISTACCOUNTS", password=live_server.postmaster_password)
    assert "frank = MultiMailbox" in listed.stdout
    refused = run_admin("--server", endpoint, "DELETEACCOUNT", "nobody", password=live_server.postmaster_password)
    assert refused.returncode == 1
    assert "unknown account nobody@example.com" in refused.stderr


def test_the_admin_tool_over_the_cli_with_a_wrong_password_fails(live_server):
    done = run_admin("--server", f"tcp:127.0.0.1:{live_server.cli_port}", "LISTDOMAINS", password="wrong")
    assert done.returncode == 1
    assert "login refused: 515" in done.stderr
