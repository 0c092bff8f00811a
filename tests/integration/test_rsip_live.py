"""
RSIP against a real provider: a second communigate server plays the
provider at provider.test (found through DNS SRV served on 127.0.0.1).
Our server registers alice out there as "gw" with digest authentication;
a caller at the provider calls gw@provider.test, the provider forks to
the registered contact, and our server retargets the call to alice, whose
sipp UAS answers.
"""

import os
import subprocess
import time

import pytest_twisted
from twisted.internet import threads
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.formats.cgdata import loads
from communigate.testing import free_port, served_records, start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]


def cli(live, *lines):
    answers = []
    with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
        client.login("postmaster", live.postmaster_password)
        for line in lines:
            code, text = client.command(line)
            assert code in (200, 201), (line, text)
            answers.append(text)
    return answers


def wait_registered(ours, deadline=15.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        (text,) = cli(ours, "LISTRSIPS alice")
        statuses = loads(text) if text else []
        if statuses and statuses[0].get("state") == "registered":
            return statuses[0]
        time.sleep(0.2)
    raise AssertionError(f"alice never registered at the provider: {statuses}")


def scenario(workdir, ours, provider, uas_port):
    cli(
        provider,
        "UPDATEDOMAINSETTINGS provider.test {SIPDigestAlgorithms = (MD5);}",
        "CREATEACCOUNT gw {Password = gwpw;}",
        "CREATEACCOUNT caller {Password = cpw;}",
    )
    cli(
        ours,
        "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
        "CREATEACCOUNT alice {Password = apw; RSIPAllowed = YES;}",
        "CREATEACCOUNT bob {Password = bpw;}",
    )
    # Refused without RSIPAllowed.
    with CLIClient.connect(f"tcp:127.0.0.1:{ours.cli_port}") as client:
        client.login("postmaster", ours.postmaster_password)
        code, text = client.command("SETACCOUNTRSIPS bob {p = {domain = provider.test;};}")
        assert code != 200 and "RSIPAllowed" in text
    cli(ours, "SETACCOUNTRSIPS alice {p = {domain = provider.test; fromName = gw; authName = gw; password = gwpw; period = 10m;};}")
    status = wait_registered(ours)
    # The provider holds our contact as gw's binding.
    (registrations,) = cli(provider, "GETACCOUNTREGISTRATIONS gw")
    assert "rsip-" in registrations, registrations

    # alice's phone registers with us; the provider's caller calls gw.
    (workdir / "alice.csv").write_text(
        f"SEQUENTIAL\nalice;example.com;[authentication username=alice password=apw];127.0.0.1:{uas_port}\n"
    )
    subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "register_contact.xml"), "-inf", "alice.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "10s", "-timeout_error", f"127.0.0.1:{ours.sip_port}"],
        capture_output=True, cwd=workdir, timeout=20, check=True,
    )
    callee = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-m", "1", "-p", str(uas_port), *SIPP,
         "-timeout", "25s", "-timeout_error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
    )
    (workdir / "caller.csv").write_text(
        "SEQUENTIAL\ncaller;provider.test;gw;[authentication username=caller password=cpw]\n"
    )
    caller = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uac_auth.xml"), "-inf", "caller.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{provider.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=30,
    )
    try:
        callee_status = callee.wait(timeout=25)
    except subprocess.TimeoutExpired:
        callee.kill()
        callee_status = None
    errors = "".join(p.read_text() for p in workdir.glob("*_errors.log"))
    return status, caller.returncode, callee_status, errors


@pytest_twisted.inlineCallbacks
def test_an_account_registered_out_receives_calls_through_the_provider(tmp_path):
    provider = start_server(tmp_path / "provider", domain="provider.test")
    ours = None
    zone, dns_port = served_records(
        {
            (b"_sip._udp.provider.test", tdns.SRV): [tdns.Record_SRV(0, 0, provider.sip_port, b"sip.provider.test")],
            (b"sip.provider.test", tdns.A): [tdns.Record_A("127.0.0.1")],
            (b"provider.test", tdns.SOA): [tdns.Record_SOA(b"ns.provider.test", b"admin.provider.test")],
        }
    )
    try:
        ours = start_server(tmp_path / "ours")
        cli(ours, f'UPDATESIPSETTINGS {{DNSServers = "127.0.0.1:{dns_port.getHost().port}";}}')
        status, caller, callee, errors = yield threads.deferToThread(scenario, tmp_path, ours, provider, free_port())
    finally:
        if ours is not None:
            stop_server(ours)
        stop_server(provider)
        yield dns_port.stopListening()
    assert status["lastStatus"].startswith("200"), status
    assert caller == 0, errors
    assert callee == 0, errors
    assert zone.asked(b"_sip._udp.provider.test", tdns.SRV)
