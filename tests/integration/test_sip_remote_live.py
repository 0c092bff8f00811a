"""
A call from a local user to a domain outside: the Router sends it to the
SIP module, which locates the domain's server through DNS (RFC 3263: no
NAPTR, an SRV record, an A record, served by twisted.names on 127.0.0.1)
and calls the sipp UAS found there.
"""

import os
import subprocess

import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.names import dns as tdns
from twisted.names import error, server
from twisted.names.common import ResolverBase

from communigate.admin.client import CLIClient
from communigate.testing import free_port, start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]


class RemoteZone(ResolverBase):
    """
    remote.test: SRV _sip._udp to host.remote.test on the UAS's port, and
    the host's A record; nothing else exists.
    """

    def __init__(self, port):
        super().__init__()
        self.port = port
        self.questions = []

    def _answer(self, name, kind, payload):
        return defer.succeed(([tdns.RRHeader(name, kind, tdns.IN, 60, payload, auth=True)], [], []))

    def lookupService(self, name, timeout=None):
        self.questions.append(name)
        if name == b"_sip._udp.remote.test":
            return self._answer(name, tdns.SRV, tdns.Record_SRV(0, 0, self.port, b"host.remote.test"))
        return defer.fail(error.DomainError(name))

    def lookupAddress(self, name, timeout=None):
        self.questions.append(name)
        if name == b"host.remote.test":
            return self._answer(name, tdns.A, tdns.Record_A("127.0.0.1"))
        return defer.fail(error.DomainError(name))

    def lookupNamingAuthorityPointer(self, name, timeout=None):
        # The domain exists but publishes no NAPTR: the locator goes on to SRV.
        self.questions.append(name)
        if name == b"remote.test":
            return defer.succeed(([], [], []))
        return defer.fail(error.DomainError(name))

    def _lookup(self, name, cls, type, timeout):
        return defer.fail(error.DomainError(name))


def call_out(workdir, live, uas_port):
    with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
        client.login("postmaster", live.postmaster_password)
        for line in (
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT alice {Password = apw;}",
        ):
            assert client.command(line)[0] == 200
    callee = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-m", "1", "-p", str(uas_port), *SIPP,
         "-timeout", "25s", "-timeout_error"],
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
def test_a_call_to_a_remote_domain_reaches_the_server_its_dns_names(tmp_path):
    uas_port = free_port()
    zone = RemoteZone(uas_port)
    factory = server.DNSServerFactory(authorities=[zone])
    dns_port = reactor.listenUDP(0, tdns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    live = start_server(tmp_path / "data")
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
            client.login("postmaster", live.postmaster_password)
            code, text = client.command(f'UPDATESIPSETTINGS {{DNSServers = "127.0.0.1:{dns_port.getHost().port}";}}')
            assert code == 200, text
        caller, callee, errors = yield threads.deferToThread(call_out, tmp_path, live, uas_port)
    finally:
        stop_server(live)
        yield dns_port.stopListening()
    assert caller == 0, errors
    assert callee == 0, errors
    assert b"_sip._udp.remote.test" in zone.questions and b"host.remote.test" in zone.questions
