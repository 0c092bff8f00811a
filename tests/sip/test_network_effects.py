"""
What the Network settings do to SIP: NAT detection with configured LAN
and NATed IPs, Blacklisted IPs ignored (counted, logged once a minute),
Debug IPs' messages in the server log in full, Client IPs relaying without
authentication, and the WAN address in our Via and Record-Route towards
peers outside the LAN.

The service runs on a memory reactor whose UDP ports keep what is written
to them; datagrams are played in as if from the network.
"""

import pytest
from twisted.logger import capturedLogs, formatEvent

from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.network import NetworkSettings
from communigate.server import build_core
from communigate.sip.message import parse_message
from communigate.sip.proxy_rules import Relay, relay_verdict
from communigate.sip.service import SIPService, behind_nat
from communigate.sip.transport import Flow
from communigate.storage import MemoryStore
from communigate.testing import MemoryUDPReactor

PORT = 5060
US = "192.0.2.1"


def sip_request(method, uri, source, *, via=None, contact=None, sender="probe@example.net", n=1, extra=""):
    via = via or f"{source[0]}:{source[1]}"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch=z9hG4bK-{method.lower()}-{n};rport",
        f"From: <sip:{sender}>;tag=f{n}",
        f"To: <{uri}>",
        f"Call-ID: call-{method.lower()}-{n}@test",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    return ("\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n").encode()


class Server:
    """
    A SIP service on UDP 192.0.2.1:5060 of a memory reactor, with
    example.com and its postmaster.
    """

    def __init__(self):
        self.reactor = MemoryUDPReactor()
        self.core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), self.reactor)
        create_initial_objects(self.core.directory, "example.com")
        self.service = SIPService(self.core, [f"udp:{PORT}:interface={US}"], secret=b"k" * 32)
        self.service.startService()
        (self.port,) = [p for p in self.reactor.udp_ports if p.getHost().port == PORT]

    def cli(self, line):
        from communigate.cli.context import CommandContext

        result = self.core.interpreter.run(CommandContext.for_account("postmaster@example.com"), line)
        assert result.ok, result.error
        return result

    def send(self, data, source):
        self.port.receive(data, source)

    def replies(self, to=None):
        """
        What was written (to C{to}, or anywhere), parsed; then forgotten.
        """
        taken = [(data, address) for data, address in self.port.written if to is None or address == to]
        self.port.written[:] = [item for item in self.port.written if item not in taken]
        return [parse_message(data) for data, _ in taken]

    def dropped(self, reason):
        return self.core.metrics.get_sample_value("communigate_sip_dropped_total", {"reason": reason}) or 0


@pytest.fixture
def server():
    running = Server()
    yield running
    running.service.stopService()


RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcgx\r\nFrom: <sip:a@example.net>;tag=1\r\n"
    b"To: <sip:b@example.net>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def options(source, n=1, uri=f"sip:{US}:{PORT}"):
    return sip_request("OPTIONS", uri, source, n=n)


# -- NAT detection ----------------------------------------------------------------------


def request_from(source, *, via=None, contact=None):
    return parse_message(sip_request("REGISTER", "sip:example.com", source, via=via, contact=contact))


def flow_from(source):
    return Flow("udp", (US, PORT), source)


@pytest.mark.parametrize(
    ("network", "source", "via", "contact", "nat"),
    [
        # The source differs from the Via: NAT, on the LAN or not.
        ({}, ("203.0.113.5", 5060), "192.168.1.5:5060", None, True),
        ({}, ("192.168.1.7", 5060), "192.168.1.5:5060", None, True),
        ({}, ("203.0.113.5", 31000), "203.0.113.5:5060", None, True),
        # The Via is the source, the Contact a private address: NAT from outside.
        ({}, ("203.0.113.5", 5060), None, "sip:a@192.168.1.5", True),
        ({}, ("203.0.113.5", 5060), None, "sip:a@203.0.113.5", False),
        ({}, ("203.0.113.5", 5060), None, "sip:a@phone.example.net", False),
        # On the LAN (the private ranges by default) a private Contact is at home.
        ({}, ("192.168.1.5", 5060), None, "sip:a@192.168.1.9", False),
        # LAN IPs configured: a public office range is the LAN ...
        ({"LANIPs": "203.0.113.0/24"}, ("203.0.113.5", 5060), None, "sip:a@192.168.1.5", False),
        # ... and a private address outside it is not, but names itself truly.
        ({"LANIPs": "10.1.0.0/16"}, ("10.2.0.5", 5060), None, "sip:a@10.2.0.5", False),
        ({"LANIPs": "10.1.0.0/16"}, ("10.2.0.5", 5060), None, "sip:a@192.168.9.9", True),
        # NATed IPs add to the private ranges.
        ({}, ("198.51.100.5", 5060), None, "sip:a@100.64.0.9", False),
        ({"NATedIPs": "100.64.0.0/10"}, ("198.51.100.5", 5060), None, "sip:a@100.64.0.9", True),
    ],
)
def test_nat_detection_follows_the_lan_and_nated_ips(network, source, via, contact, nat):
    settings = NetworkSettings.from_data(network)
    assert behind_nat(request_from(source, via=via, contact=contact), flow_from(source), settings) is nat


def test_nat_detection_without_settings_uses_the_built_in_ranges():
    source = ("203.0.113.5", 5060)
    assert behind_nat(request_from(source, contact="sip:a@10.0.0.5"), flow_from(source))
    assert not behind_nat(request_from(source, contact="sip:a@203.0.113.5"), flow_from(source))


# -- Blacklisted IPs ------------------------------------------------------------------


def test_a_blacklisted_address_is_ignored_counted_and_logged_once_a_minute(server):
    bad, good = ("203.0.113.66", 5060), ("203.0.113.7", 5060)
    server.send(options(bad), bad)
    assert [r.status for r in server.replies(bad)] == [200]
    server.cli('SETBLACKLISTEDIPS "203.0.113.64/28 ; abusers"')
    with capturedLogs() as events:
        for n in range(5):
            server.send(options(bad, n=10 + n), bad)
        server.send(RESPONSE, bad)
        server.send(options(bad, n=15).replace(b"CSeq: 1", b"CSeq: x"), bad)  # malformed: no 400 either
        server.send(options(good, n=20), good)
    assert [r.status for r in server.replies(good)] == [200]
    assert server.replies() == []
    assert server.dropped("blacklisted") == 7
    logged = [formatEvent(e) for e in events if "blacklisted" in formatEvent(e)]
    assert logged == ["ignoring SIP from blacklisted address 203.0.113.66 (logged once a minute per address)"]
    server.reactor.advance(60)
    with capturedLogs() as events:
        server.send(options(bad, n=30), bad)
    assert len([e for e in events if "blacklisted" in formatEvent(e)]) == 1
    server.cli('SETBLACKLISTEDIPS ""')
    server.send(options(bad, n=40), bad)
    assert [r.status for r in server.replies(bad)] == [200]


def test_a_keepalive_from_a_client_is_taken_and_one_from_a_blacklisted_address_ignored(server):
    client, bad = ("203.0.113.5", 5060), ("203.0.113.66", 5060)
    server.cli("SETBLACKLISTEDIPS 203.0.113.66")
    server.send(b"\r\n\r\n", client)
    server.send(b"\r\n\r\n", bad)
    assert server.dropped("blacklisted") == 1
    assert server.replies() == []


# -- Debug IPs ---------------------------------------------------------------------------


def test_messages_to_and_from_a_debug_ip_are_logged_in_full(server):
    watched, other = ("198.51.100.9", 5062), ("198.51.100.10", 5060)
    server.cli("SETDEBUGIPS 198.51.100.9")
    with capturedLogs() as events:
        server.send(options(watched), watched)
        server.send(options(other, n=2), other)
    texts = [formatEvent(e) for e in events if e.get("debug_ip")]
    assert len(texts) == 2
    assert texts[0].startswith("SIP in udp 198.51.100.9:5062 (Debug IP)\nOPTIONS sip:192.0.2.1:5060 SIP/2.0\r\n")
    assert "Call-ID: call-options-1@test" in texts[0]
    assert texts[1].startswith("SIP out udp 198.51.100.9:5062 (Debug IP)\nSIP/2.0 200 OK\r\n")
    assert all(e["log_level"].name == "info" for e in events if e.get("debug_ip"))
    # The SIP log still has every message.
    assert len(server.service.sip_log.search(limit=10)) == 4


# -- Client IPs ---------------------------------------------------------------------------


def test_relay_verdict_lets_a_trusted_source_relay_to_non_local_targets():
    local = {"example.com"}.__contains__
    ours = [(US, PORT)]

    def verdict(sender, uri, trusted):
        request = parse_message(sip_request("INVITE", uri, ("192.168.1.20", 5060), sender=sender))
        return relay_verdict(request, is_local_domain=local, local_hosts=ours, trusted_source=trusted)

    assert verdict("pbx@example.com", "sip:bob@biloxi.net", True) is Relay.ALLOW
    assert verdict("pbx@example.com", "sip:bob@biloxi.net", False) is Relay.CHALLENGE
    assert verdict("pbx@atlanta.net", "sip:bob@biloxi.net", True) is Relay.ALLOW
    assert verdict("pbx@atlanta.net", "sip:bob@biloxi.net", False) is Relay.DENY
    # Local targets follow the usual rules: a local caller still authenticates.
    assert verdict("pbx@example.com", "sip:bob@example.com", True) is Relay.CHALLENGE
    assert verdict("pbx@atlanta.net", "sip:bob@example.com", True) is Relay.ALLOW


def test_a_client_ip_relays_to_a_remote_domain_without_authentication(server):
    pbx = ("192.168.1.20", 5060)
    remote = ("198.51.100.20", 5060)
    invite = sip_request("INVITE", "sip:bob@198.51.100.20", pbx, sender="pbx@example.com", n=1)
    server.send(invite, pbx)
    assert [r.status for r in server.replies(pbx)] == [100, 407]
    assert server.replies(remote) == []
    server.cli('SETCLIENTIPS "192.168.1.20 ; the PBX"')
    server.send(sip_request("INVITE", "sip:bob@198.51.100.20", pbx, sender="pbx@example.com", n=2), pbx)
    assert [r.status for r in server.replies(pbx)] == [100]
    (forwarded,) = server.replies(remote)
    assert forwarded.method == "INVITE" and str(forwarded.uri) == "sip:bob@198.51.100.20"


# -- WAN address -------------------------------------------------------------------------


def test_requests_to_peers_outside_the_lan_name_us_by_the_wan_address(server):
    pbx = ("192.168.1.20", 5060)
    server.cli('UPDATENETWORK {WANAddress = 198.51.100.1; ClientIPs = "192.168.1.0/24";}')
    server.send(sip_request("INVITE", "sip:bob@203.0.113.30", pbx, n=1), pbx)
    (outside,) = server.replies(("203.0.113.30", 5060))
    assert outside.top_via().host == "198.51.100.1" and outside.top_via().port == PORT
    assert outside.headers.get("Record-Route") == f"<sip:198.51.100.1:{PORT};transport=udp;lr>"
    server.send(sip_request("INVITE", "sip:bob@192.168.1.30", pbx, n=2), pbx)
    (inside,) = server.replies(("192.168.1.30", 5060))
    assert inside.top_via().host == US
    assert inside.headers.get("Record-Route") == f"<sip:{US}:{PORT};transport=udp;lr>"


def test_without_a_wan_address_every_peer_sees_the_listener_address(server):
    pbx = ("192.168.1.20", 5060)
    server.cli('SETCLIENTIPS "192.168.1.0/24"')
    server.send(sip_request("INVITE", "sip:bob@203.0.113.30", pbx), pbx)
    (outside,) = server.replies(("203.0.113.30", 5060))
    assert outside.top_via().host == US


def test_the_wan_address_is_one_of_ours(server):
    outside = ("203.0.113.5", 5060)
    server.send(options(outside, uri=f"sip:198.51.100.1:{PORT}"), outside)
    assert [r.status for r in server.replies(outside)] == [403]  # someone else's: relaying denied
    server.cli("UPDATENETWORK {WANAddress = 198.51.100.1;}")
    server.send(options(outside, n=2, uri=f"sip:198.51.100.1:{PORT}"), outside)
    (answer,) = server.replies(outside)
    assert answer.status == 200 and "INVITE" in answer.headers.get("Allow")
