"""
The Network settings on a real server, driven by raw UDP sockets bound to
other loopback addresses (all of 127/8 is this host on Linux): a
Blacklisted IP set over the CLI is ignored while others are answered, and
a Debug IP's messages are written in full to the server log file; a list
the admin tool sets on the data directory takes effect in the running
server.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

from communigate.admin.client import CLIClient

ADMIN = os.path.join(os.path.dirname(sys.executable), "communigate-admin")

OPTIONS = (
    "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK-{tag};rport\r\n"
    "From: <sip:probe@example.net>;tag=p{tag}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
    "Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


def probe(server, host, tag, wait=1.0):
    """
    An OPTIONS from C{host}; the replies that came back within C{wait} seconds.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(wait)
        local = s.getsockname()[1]
        text = OPTIONS.format(port=server.sip_port, host=host, local=local, tag=tag)
        s.sendto(text.encode(), ("127.0.0.1", server.sip_port))
        replies = []
        try:
            while True:
                replies.append(s.recv(65536).decode())
        except socket.timeout:
            return replies


def metric(server, name, label):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_blacklisted_address_is_ignored_after_setblacklistedips(live_server):
    assert probe(live_server, "127.0.0.2", "before")[0].startswith("SIP/2.0 200 OK")
    assert cli(live_server, 'SETBLACKLISTEDIPS "127.0.0.2 ; a test abuser"')[0] == 200
    assert cli(live_server, "GETBLACKLISTEDIPS") == (201, '"127.0.0.2 ; a test abuser"')
    assert probe(live_server, "127.0.0.2", "during-1") == []
    assert probe(live_server, "127.0.0.2", "during-2", wait=0.5) == []
    assert probe(live_server, "127.0.0.1", "others")[0].startswith("SIP/2.0 200 OK")
    assert metric(live_server, "communigate_sip_dropped_total", 'reason="blacklisted"') == 2.0
    assert wait_for(lambda: "ignoring SIP from blacklisted address 127.0.0.2" in live_server.output())
    assert live_server.output().count("ignoring SIP from blacklisted address 127.0.0.2") == 1
    assert cli(live_server, 'SETBLACKLISTEDIPS ""')[0] == 200
    assert probe(live_server, "127.0.0.2", "after")[0].startswith("SIP/2.0 200 OK")


def test_a_debug_ips_messages_are_written_to_the_server_log(live_server):
    assert cli(live_server, 'SETDEBUGIPS "127.0.0.3"')[0] == 200
    assert probe(live_server, "127.0.0.3", "debug-me-3")[0].startswith("SIP/2.0 200 OK")
    assert probe(live_server, "127.0.0.4", "not-me-4")[0].startswith("SIP/2.0 200 OK")
    assert wait_for(lambda: "SIP out udp 127.0.0.3" in live_server.output())
    log = live_server.output()
    incoming = log[log.index("SIP in udp 127.0.0.3:"):]
    assert "OPTIONS sip:127.0.0.1:" in incoming and "Call-ID: debug-me-3" in incoming
    outgoing = log[log.index("SIP out udp 127.0.0.3:"):]
    assert "SIP/2.0 200 OK" in outgoing.split("Call-ID: debug-me-3")[0]
    assert "not-me-4" not in log


def test_a_list_set_by_the_admin_tool_on_the_data_directory_takes_effect(live_server):
    done = subprocess.run(
        [ADMIN, "--data", live_server.data_dir, "SETBLACKLISTEDIPS", "127.0.0.5"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    time.sleep(1.1)  # the running server checks the store at most once a second
    assert probe(live_server, "127.0.0.5", "admin-tool") == []
    assert cli(live_server, "GETNETWORK")[1].count("BlacklistedIPs = 127.0.0.5") == 1
