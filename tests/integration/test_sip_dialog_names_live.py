"""
A call to a remote domain whose callee names itself by a host NAME in its
Contact: the caller's ACK and BYE follow the Record-Route to the server,
which locates that name through DNS (RFC 3263: A records for a URI with a
port, served by twisted.names on 127.0.0.1) and forwards them there, so
the sipp UAS receives the BYE and the call ends cleanly.
"""

import os
import subprocess

import pytest_twisted
from twisted.internet import threads
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.testing import free_port, served_records, start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]


def zone_records(uas_port):
    """
    remote.test exists without NAPTR; its SIP server is found by SRV; the
    callee's Contact names uas.remote.test, which has only an A record.
    """
    return {
        (b"_sip._udp.remote.test", tdns.SRV): [tdns.Record_SRV(0, 0, uas_port, b"host.remote.test")],
        (b"host.remote.test", tdns.A): [tdns.Record_A("127.0.0.1")],
        (b"uas.remote.test", tdns.A): [tdns.Record_A("127.0.0.1")],
        (b"remote.test", tdns.SOA): [tdns.Record_SOA(b"ns.remote.test", b"admin.remote.test")],
    }


def call(workdir, live, uas_port):
    with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
        client.login("postmaster", live.postmaster_password)
        for line in (
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT alice {Password = apw;}",
        ):
            assert client.command(line)[0] == 200
    callee = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uas_named_contact.xml"), "-m", "1", "-p", str(uas_port),
         *SIPP, "-timeout", "25s", "-timeout_error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
    )
    (workdir / "out.csv").write_text(
        "SEQUENTIAL\nalice;example.com;bob@remote.test;[authentication username=alice password=apw]\n"
    )
    caller = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uac_remote.xml"), "-inf", "out.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{live.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=30,
    )
    try:
        callee_status = callee.wait(timeout=25)
    except subprocess.TimeoutExpired:
        callee.kill()
        callee_status = None
    errors = "".join(p.read_text() for p in workdir.glob("*_errors.log"))
    return caller.returncode, callee_status, errors


@pytest_twisted.inlineCallbacks
def test_a_bye_to_a_contact_named_by_dns_reaches_the_callee(tmp_path):
    uas_port = free_port()
    zone, dns_port = served_records(zone_records(uas_port))
    live = start_server(tmp_path / "data")
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
            client.login("postmaster", live.postmaster_password)
            code, text = client.command(f'UPDATESIPSETTINGS {{DNSServers = "127.0.0.1:{dns_port.getHost().port}";}}')
            assert code == 200, text
        caller, callee, errors = yield threads.deferToThread(call, tmp_path, live, uas_port)
    finally:
        stop_server(live)
        yield dns_port.stopListening()
    assert caller == 0, errors + live.output()[-3000:]
    assert callee == 0, errors + live.output()[-3000:]
    assert zone.asked(b"_sip._udp.remote.test", tdns.SRV)
    # The Contact has a port: A (and AAAA) only, no SRV (RFC 3263 §4.2).
    assert zone.asked(b"uas.remote.test", tdns.A)
    assert not zone.asked(b"_sip._udp.uas.remote.test", tdns.SRV)
