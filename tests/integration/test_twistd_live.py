"""
`twistd communigate` as an operator runs it: first start, restarts,
metrics and health, JSON logs, refusals of unusable data directories.
"""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.request

from communigate.testing import start_server, stop_server

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def test_first_start_creates_the_data_directory_and_postmaster(tmp_path):
    data = tmp_path / "data"
    server = start_server(data, "--demo")
    try:
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
        password_file = data / "postmaster-password"
        assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
        assert password_file.read_text().split()[0] == "postmaster@example.com"
    finally:
        stop_server(server)
    printed = server.output()
    for account in ("postmaster", "alice", "bob"):
        assert f"created {account}@example.com with password " in printed
    again = start_server(data)
    try:
        pass
    finally:
        stop_server(again)
    assert "created" not in again.output()


def test_metrics_and_health_are_served(live_server):
    base = f"http://127.0.0.1:{live_server.http_port}"
    with urllib.request.urlopen(base + "/health", timeout=10) as response:
        assert json.load(response)["status"] == "ok"
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "communigate_cli_connections_total" in text
    assert "communigate_commands_total" in text
    assert 'communigate_directory_objects{kind="account"} 1.0' in text


def test_json_logs_are_one_object_per_line(tmp_path):
    server = start_server(tmp_path / "data", "--log-format", "json")
    # The CLI accepts connections while the other modules are still
    # starting; a SIGTERM before twistd's reactor runs kills the process
    # outright, so wait for the server's own start line first.
    deadline = time.monotonic() + 15
    while "communigate serving domain" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_server(server)
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    assert any(e.get("log_namespace") == "communigate.server.CommunigateServer" for e in events)
    assert all("log_level" in e and "message" in e for e in events)


def twistd(*argv):
    return subprocess.run(
        [TWISTD, "--nodaemon", "--pidfile=", "communigate", *argv],
        capture_output=True, text=True, timeout=60,
    )


def test_a_data_directory_of_a_newer_release_is_refused_untouched(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    database = data / "communigate.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA user_version=42")
    before = database.read_bytes()
    done = twistd("--data", str(data), "--cli", "none", "--http", "none")
    assert done.returncode != 0
    assert "schema version 42" in done.stdout + done.stderr
    assert database.read_bytes() == before


def test_a_bad_listen_option_is_a_usage_error_naming_it(tmp_path):
    done = twistd("--data", str(tmp_path / "d"), "--cli", "udp:106")
    assert done.returncode != 0
    assert "--cli 'udp:106'" in done.stdout + done.stderr
    assert not (tmp_path / "d").exists()
