"""
The media relay on a memory reactor and clock: port pairs from the range,
forwarding both ways without decoding, latching, drops counted by reason,
SDP followed and rewritten, the session cap, the idle timeout, release.
"""

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.error import CannotListenError
from zope.interface.verify import verifyObject

from communigate.interfaces import IMediaRelay, IRelaySession
from communigate.media.latch import Drop
from communigate.media.rtcp import ReceiverReport, compound
from communigate.media.rtp import RTPPacket
from communigate.media.relay import (
    SETUP_LIMIT,
    LegAddress,
    MediaRelay,
    RelayRefused,
    Side,
    relay_description,
)
from communigate.media.relay_settings import RelaySettings
from communigate.media.sdp import SDPError
from communigate.testing import MemoryUDPReactor

CALLER = LegAddress("198.51.100.1", "198.51.100.1")
CALLEE = LegAddress("198.51.100.1", "198.51.100.1")
PHONE_A = ("203.0.113.7", 40000)  # the caller's NAT, as packets show it
PHONE_B = ("192.0.2.20", 5000)


class Configuration:
    def __init__(self, **settings):
        self.current = RelaySettings(**settings)


class BusyPorts(MemoryUDPReactor):
    """Some ports of the range are taken by another program."""

    def __init__(self, busy):
        super().__init__()
        self.busy = set(busy)

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if port in self.busy:
            raise CannotListenError(interface, port, OSError("in use"))
        return super().listenUDP(port, protocol, interface, maxPacketSize)


def rtp(sequence=1, payload=b"\xff" * 160):
    return RTPPacket(0, sequence, 160 * sequence, 0x1234, payload).serialize()


RTCP = compound(ReceiverReport(0x1234), "a@example.com")


@pytest.fixture
def reactor():
    return MemoryUDPReactor()


def relay_on(reactor, **settings):
    registry = CollectorRegistry()
    relay = MediaRelay(reactor, Configuration(**settings), registry=registry)
    relay.registry = registry
    return relay


def port(reactor, number):
    found = [p for p in reactor.udp_ports if p.getHost().port == number and p.listening]
    assert len(found) == 1, f"port {number} is not open"
    return found[0]


def open_call(reactor, relay, key="call-1", caller_nat=True):
    session = relay.open(key, CALLER, CALLEE, "nat")
    a, b = session.ports(Side.CALLER, 0), session.ports(Side.CALLEE, 0)
    session.expect(Side.CALLER, 0, ("10.0.0.5", 4000), ("10.0.0.5", 4001), caller_nat)
    session.expect(Side.CALLEE, 0, PHONE_B, (PHONE_B[0], PHONE_B[1] + 1), False)
    return session, port(reactor, a), port(reactor, a + 1), port(reactor, b), port(reactor, b + 1)


def metric(relay, name, **labels):
    value = relay.registry.get_sample_value(name, labels)
    return 0 if value is None else value


# -- interfaces and ports --------------------------------------------------------


def test_the_relay_and_its_sessions_provide_their_interfaces(reactor):
    relay = relay_on(reactor)
    assert verifyObject(IMediaRelay, relay)
    assert verifyObject(IRelaySession, relay.open("k", CALLER, CALLEE, "nat"))


def test_each_leg_gets_an_even_rtp_port_and_the_odd_one_above_from_the_range(reactor):
    relay = relay_on(reactor, port_low=31001, port_high=31010)
    session = relay.open("k", CALLER, CALLEE)
    caller, callee = session.ports(Side.CALLER, 0), session.ports(Side.CALLEE, 0)
    assert (caller, callee) == (31002, 31004)
    assert session.ports(Side.CALLER, 0) == 31002  # asked again: the same pair
    assert sorted(p.getHost().port for p in reactor.udp_ports) == [31002, 31003, 31004, 31005]
    assert all(p.getHost().host == "198.51.100.1" for p in reactor.udp_ports)
    assert metric(relay, "communigate_media_relay_ports") == 4


def test_ports_taken_by_another_program_are_skipped():
    reactor = BusyPorts({30000, 30003})
    relay = relay_on(reactor, port_low=30000, port_high=30009)
    session = relay.open("k", CALLER, CALLEE)
    assert (session.ports(Side.CALLER, 0), session.ports(Side.CALLEE, 0)) == (30004, 30006)
    assert not [p for p in reactor.udp_ports if p.getHost().port == 30002 and p.listening]


def test_an_exhausted_range_refuses_the_stream_and_opens_nothing(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30005)  # three pairs: one stream and a half
    session = relay.open("k", CALLER, CALLEE)
    session.ports(Side.CALLER, 0)
    with pytest.raises(RelayRefused, match="no free port pair in PortRange 30000-30005") as refused:
        session.ports(Side.CALLER, 1)
    assert refused.value.reason == "ports"
    assert len([p for p in reactor.udp_ports if p.listening]) == 4
    assert metric(relay, "communigate_media_relay_refused_total", reason="ports") == 1


def test_released_ports_are_handed_out_last(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30015)  # eight pairs, two a call
    first = relay.open("a", CALLER, CALLEE)
    assert first.ports(Side.CALLER, 0) == 30000
    first.release("bye")
    taken = []
    for key in "bcde":
        taken.append(relay.open(key, CALLER, CALLEE).ports(Side.CALLER, 0))
    assert taken == [30004, 30008, 30012, 30000]  # round the range to the released pairs


def test_the_session_cap_refuses_with_a_message_naming_the_setting(reactor):
    relay = relay_on(reactor, max_relays=2)
    relay.open("a", CALLER, CALLEE)
    assert relay.open("a", CALLER, CALLEE) is relay.get("a")  # the open one, not a new one
    relay.open("b", CALLER, CALLEE)
    with pytest.raises(RelayRefused, match=r"media relay limit of 2 sessions reached \(MaxRelays\)"):
        relay.open("c", CALLER, CALLEE)
    assert metric(relay, "communigate_media_relay_refused_total", reason="limit") == 1
    relay.release("a", "bye")
    relay.open("c", CALLER, CALLEE)


def test_a_session_relays_at_most_four_streams(reactor):
    relay = relay_on(reactor)
    session = relay.open("k", CALLER, CALLEE)
    for index in range(4):
        session.ports(Side.CALLER, index)
    with pytest.raises(RelayRefused, match="at most 4 streams"):
        session.ports(Side.CALLER, 4)


# -- forwarding and latching -------------------------------------------------------


def test_packets_cross_to_the_other_party_out_of_the_other_leg_both_ways(reactor):
    relay = relay_on(reactor)
    session, a_rtp, a_rtcp, b_rtp, b_rtcp = open_call(reactor, relay)
    packet = rtp()
    a_rtp.receive(packet, PHONE_A)  # the NATed caller sends first and is latched
    assert b_rtp.written == [(packet, PHONE_B)]  # to the callee's SDP address
    b_rtp.receive(rtp(2), PHONE_B)
    assert a_rtp.written == [(rtp(2), PHONE_A)]  # to where the caller's packets came from
    a_rtcp.receive(RTCP, (PHONE_A[0], PHONE_A[1] + 1))
    assert b_rtcp.written == [(RTCP, (PHONE_B[0], PHONE_B[1] + 1))]
    assert session.packets(Side.CALLER) == (2, len(packet) + len(RTCP))
    assert session.packets(Side.CALLEE) == (1, len(packet))
    assert metric(relay, "communigate_media_relay_packets_total", direction="from_caller") == 2
    assert metric(relay, "communigate_media_relay_bytes_total", direction="from_callee") == len(packet)
    assert metric(relay, "communigate_media_relay_latches_total") == 3


def test_rtcp_is_counted_apart_on_either_port_and_after_release(reactor):
    relay = relay_on(reactor)
    session, a_rtp, a_rtcp, b_rtp, b_rtcp = open_call(reactor, relay)
    a_rtp.receive(rtp(), PHONE_A)
    a_rtcp.receive(RTCP, (PHONE_A[0], PHONE_A[1] + 1))
    a_rtp.receive(RTCP, PHONE_A)  # multiplexed on the RTP port (RFC 5761)
    b_rtcp.receive(RTCP, (PHONE_B[0], PHONE_B[1] + 1))
    assert b_rtcp.written == [(RTCP, (PHONE_B[0], PHONE_B[1] + 1))]
    assert session.packets(Side.CALLER)[0] == 3
    assert (session.rtcp_packets(Side.CALLER), session.rtcp_packets(Side.CALLEE)) == (2, 1)
    assert session.summary()["Caller"]["RTCP"] == "2"
    assert metric(relay, "communigate_media_relay_rtcp_packets_total", direction="from_caller") == 2
    session.release("bye")
    assert relay.forwarded_rtcp(Side.CALLER) == 2 and relay.forwarded_rtcp(Side.CALLEE) == 1
    assert metric(relay, "communigate_media_relay_rtcp_packets_total", direction="from_callee") == 1


def test_a_natted_party_is_unreachable_until_it_sends(reactor):
    relay = relay_on(reactor)
    session, a_rtp, _, b_rtp, _ = open_call(reactor, relay)
    b_rtp.receive(rtp(), PHONE_B)
    assert a_rtp.written == []
    assert relay.drops[Drop.NO_DESTINATION] == 1
    assert metric(relay, "communigate_media_relay_dropped_total", reason="no_destination") == 1


def test_after_the_latch_other_sources_are_dropped_and_counted(reactor):
    relay = relay_on(reactor)
    session, a_rtp, _, b_rtp, _ = open_call(reactor, relay)
    a_rtp.receive(rtp(1), PHONE_A)
    a_rtp.receive(rtp(2), ("203.0.113.66", 40000))  # someone else
    a_rtp.receive(rtp(3), (PHONE_A[0], PHONE_A[1] + 2))  # the right host, another port
    b_rtp.receive(rtp(4), ("192.0.2.99", 5000))  # not the callee's SDP host: never latched
    assert [data for data, _ in b_rtp.written] == [rtp(1)]
    assert a_rtp.written == []
    assert relay.drops[Drop.WRONG_SOURCE] == 3
    assert session.drops == 3
    assert session.summary()["Drops"] == "3"


def test_a_party_that_is_not_natted_is_latched_only_from_its_sdp_host(reactor):
    relay = relay_on(reactor)
    session, a_rtp, _, b_rtp, _ = open_call(reactor, relay, caller_nat=False)
    a_rtp.receive(rtp(1), PHONE_A)  # the caller's SDP said 10.0.0.5
    assert b_rtp.written == [] and relay.drops[Drop.WRONG_SOURCE] == 1
    a_rtp.receive(rtp(2), ("10.0.0.5", 4000))
    assert b_rtp.written == [(rtp(2), PHONE_B)]


def test_malformed_datagrams_are_dropped_and_counted_and_the_call_goes_on(reactor):
    relay = relay_on(reactor)
    session, a_rtp, a_rtcp, b_rtp, _ = open_call(reactor, relay)
    for junk in (b"", b"hello world!", b"\x00" * 40, bytes.fromhex("83 00 0001 00000000 00000001")):
        a_rtp.receive(junk, PHONE_A)
    a_rtcp.receive(b"\x81\xc9\x00\x07", PHONE_A)
    assert relay.drops[Drop.MALFORMED] == 5
    assert session.latches == 0  # junk does not latch
    a_rtp.receive(rtp(), PHONE_A)
    assert b_rtp.written == [(rtp(), PHONE_B)]


class RefusingPorts(MemoryUDPReactor):
    """Ports whose writes fail (a full socket buffer, no route)."""

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = super().listenUDP(port, protocol, interface, maxPacketSize)

        def refuse(data, address=None):
            raise OSError("No buffer space available")

        listening.write = refuse
        return listening


def test_a_failed_send_is_counted_as_a_drop():
    reactor = RefusingPorts()
    relay = relay_on(reactor)
    session, a_rtp, _, b_rtp, _ = open_call(reactor, relay)
    a_rtp.receive(rtp(), PHONE_A)
    assert relay.drops[Drop.SEND_FAILED] == 1
    assert session.packets(Side.CALLER) == (0, 0)


def test_a_new_sdp_address_moves_the_stream_and_drops_the_old_latch(reactor):
    relay = relay_on(reactor)
    session, a_rtp, _, b_rtp, _ = open_call(reactor, relay)
    b_rtp.receive(rtp(1), PHONE_B)
    session.expect(Side.CALLEE, 0, PHONE_B, None, False)  # a refresh: same address, latch kept
    a_rtp.receive(rtp(2), PHONE_A)
    assert b_rtp.written[-1] == (rtp(2), PHONE_B)
    moved = ("192.0.2.30", 6000)
    session.expect(Side.CALLEE, 0, moved, None, False)  # a re-INVITE: the callee moved
    a_rtp.receive(rtp(3), PHONE_A)
    assert b_rtp.written[-1] == (rtp(3), moved)
    b_rtp.receive(rtp(4), PHONE_B)  # the old address is no longer the callee
    assert relay.drops[Drop.WRONG_SOURCE] == 1
    b_rtp.receive(rtp(5), moved)
    assert a_rtp.written[-1] == (rtp(5), PHONE_A)


# -- idle timeout and release -------------------------------------------------------


def test_an_answered_call_without_packets_either_way_is_released_after_the_idle_timeout(reactor):
    relay = relay_on(reactor, idle_timeout=60)
    session, a_rtp, *_ = open_call(reactor, relay)
    session.established()
    reactor.advance(50)
    a_rtp.receive(rtp(), PHONE_A)  # traffic one way keeps it
    reactor.advance(59)
    assert relay.get("call-1") is session
    reactor.advance(1)
    assert relay.get("call-1") is None and session.closed
    assert not [p for p in reactor.udp_ports if p.listening]
    assert relay.released == {"idle": 1}
    assert metric(relay, "communigate_media_relays") == 0
    assert metric(relay, "communigate_media_relay_released_total", reason="idle") == 1


def test_rtcp_alone_keeps_a_held_call(reactor):
    relay = relay_on(reactor, idle_timeout=60)
    session, _, a_rtcp, *_ = open_call(reactor, relay)
    session.established()
    for _ in range(5):
        reactor.advance(50)
        a_rtcp.receive(RTCP, PHONE_A)
    assert not session.closed


def test_a_ringing_call_is_given_the_setup_limit_not_the_idle_timeout(reactor):
    relay = relay_on(reactor, idle_timeout=10)
    session, *_ = open_call(reactor, relay)
    reactor.advance(SETUP_LIMIT - 1)
    assert not session.closed
    session.established()  # answered now: the idle timeout counts from here
    reactor.advance(9)
    assert not session.closed
    reactor.advance(1)
    assert session.closed


def test_release_closes_every_port_once_and_keeps_the_totals(reactor):
    relay = relay_on(reactor)
    session, a_rtp, *_ = open_call(reactor, relay)
    a_rtp.receive(rtp(), PHONE_A)
    relay.release("call-1", "bye")
    relay.release("call-1", "bye")
    session.release("bye")
    assert relay.released == {"bye": 1}
    assert relay.sessions() == [] and relay.open_ports() == 0
    assert not [p for p in reactor.udp_ports if p.listening]
    assert metric(relay, "communigate_media_relay_packets_total", direction="from_caller") == 1
    assert reactor.getDelayedCalls() == []
    with pytest.raises(RelayRefused, match="closed"):
        session.ports(Side.CALLER, 1)


def test_stop_releases_every_session(reactor):
    relay = relay_on(reactor)
    open_call(reactor, relay, "a")
    open_call(reactor, relay, "b")
    relay.stop()
    assert relay.sessions() == [] and relay.released == {"shutdown": 2}


def test_the_summary_shows_both_legs_for_the_operator(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("call-1", CALLER, LegAddress("0.0.0.0", "192.0.2.1"), "nat", "a@x -> b@x")
    session.ports(Side.CALLER, 0)
    session.expect(Side.CALLER, 0, ("10.0.0.5", 4000), ("10.0.0.5", 4001), True)
    session.expect(Side.CALLEE, 0, PHONE_B, None, False)
    port(reactor, 30000).receive(rtp(), PHONE_A)
    reactor.advance(3)
    summary = session.summary()
    assert summary["Key"] == "call-1" and summary["Reason"] == "nat"
    assert summary["State"] == "setup" and summary["Age"] == "3" and summary["Idle"] == "3"
    assert summary["Description"] == "a@x -> b@x"
    assert summary["Caller"] == {
        "Address": "198.51.100.1", "Ports": ["30000/30001"], "Expected": ["10.0.0.5:4000"],
        "Latched": ["203.0.113.7:40000"], "NAT": "YES", "Packets": "1", "Bytes": str(len(rtp())),
        "RTCP": "0",
    }
    assert summary["Callee"]["Address"] == "192.0.2.1"
    assert summary["Callee"]["Expected"] == ["192.0.2.20:5000"] and summary["Callee"]["NAT"] == "NO"


# -- SDP ------------------------------------------------------------------------------

OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "m=application 5000 TCP/BFCP *\r\n"
).encode()


def test_sdp_from_the_caller_points_at_the_callee_leg_and_records_the_caller(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, LegAddress("198.51.100.1", "192.0.2.1"))
    rewritten = relay_description(session, Side.CALLER, OFFER, lambda host: True)
    text = rewritten.decode()
    # The callee's leg: audio on 30002 (caller 30000), video on 30006 (caller 30004).
    assert "c=IN IP4 192.0.2.1\r\n" in text
    assert "m=audio 30002 RTP/AVP 0 101\r\n" in text and "m=video 30006 RTP/AVP 96\r\n" in text
    # Not RTP: keeps its own port and, under a changed session c=, the old address.
    assert "m=application 5000 TCP/BFCP *\r\nc=IN IP4 10.0.0.5\r\n" in text
    assert "o=alice 1 1 IN IP4 10.0.0.5" in text
    assert session.summary()["Caller"]["Expected"] == ["10.0.0.5:4000", "10.0.0.5:4002"]
    assert session.summary()["Caller"]["NAT"] == "YES"


def test_the_answer_from_the_callee_points_at_the_caller_leg(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, CALLEE)
    relay_description(session, Side.CALLER, OFFER, lambda host: True)
    answer = (
        "v=0\r\no=bob 2 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 0\r\na=rtcp:5009\r\nm=video 0 RTP/AVP 96\r\nm=application 0 TCP/BFCP *\r\n"
    ).encode()
    text = relay_description(session, Side.CALLEE, answer, lambda host: False).decode()
    assert "m=audio 30000 RTP/AVP 0\r\na=rtcp:30001\r\n" in text
    assert "m=video 0 RTP/AVP 96" in text  # rejected stays rejected
    assert "c=IN IP4 198.51.100.1" in text
    callee = session.summary()["Callee"]
    assert callee["Expected"] == ["192.0.2.20:5000", ""] and callee["NAT"] == "NO"
    # RTCP goes where a=rtcp said.
    port(reactor, 30001).receive(RTCP, PHONE_A)
    assert port(reactor, 30003).written == [(RTCP, ("192.0.2.20", 5009))]


def test_sdp_with_nothing_to_relay_is_left_alone(reactor):
    relay = relay_on(reactor)
    session = relay.open("k", CALLER, CALLEE)
    msrp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\n"
    no_address = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    assert relay_description(session, Side.CALLER, msrp, lambda host: True) is None
    assert relay_description(session, Side.CALLER, no_address, lambda host: True) is None
    assert reactor.udp_ports == []
    with pytest.raises(SDPError):
        relay_description(session, Side.CALLER, b"v=0\r\nthis is not sdp", lambda host: True)


def test_sdp_that_already_names_the_relay_is_not_relayed_into_itself(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, LegAddress("198.51.100.1", "192.0.2.1"))
    once = relay_description(session, Side.CALLER, OFFER, lambda host: True)
    ports = len(reactor.udp_ports)
    # The same call back through this server (a spiral), with the same
    # Call-ID and tag: its SDP points at the callee leg already.
    assert relay_description(session, Side.CALLER, once, lambda host: True) is None
    assert len(reactor.udp_ports) == ports
    assert session.summary()["Caller"]["Expected"] == ["10.0.0.5:4000", "10.0.0.5:4002"]
    assert relay.loops == 2 and metric(relay, "communigate_media_relay_loops_total") == 2
    # Another session's relay port is the relay's too.
    other = relay.open("k2", CALLER, CALLEE)
    assert relay_description(other, Side.CALLER, once, lambda host: True) is None


def test_an_address_on_a_relay_port_number_that_is_not_the_relays_is_relayed(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, CALLEE)
    session.ports(Side.CALLER, 0)
    assert not relay.owns("10.9.9.9", 30000)
    assert relay.owns("198.51.100.1", 30000) and not relay.owns("198.51.100.1", 30050)


# -- rtcp-mux (RFC 5761) -------------------------------------------------------------

MUX_OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 203.0.113.7\r\ns=-\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtcp-mux\r\n"
).encode()


def mux_answer(mux):
    return (
        "v=0\r\no=bob 2 2 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 0\r\n" + ("a=rtcp-mux\r\n" if mux else "")
    ).encode()


def test_a_call_where_both_parties_mux_carries_rtcp_on_the_rtp_ports_both_ways(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, CALLEE)
    offer = relay_description(session, Side.CALLER, MUX_OFFER, lambda host: False)
    answer = relay_description(session, Side.CALLEE, mux_answer(True), lambda host: False)
    assert b"a=rtcp-mux\r\n" in offer and b"a=rtcp-mux\r\n" in answer  # the parties agree between themselves
    caller_rtp, caller_rtcp = port(reactor, 30000), port(reactor, 30001)
    callee_rtp, callee_rtcp = port(reactor, 30002), port(reactor, 30003)
    caller_rtp.receive(rtp(), PHONE_A)
    caller_rtp.receive(RTCP, PHONE_A)  # an SR/RR multiplexed on the RTP port
    assert callee_rtp.written == [(rtp(), PHONE_B), (RTCP, PHONE_B)]
    callee_rtp.receive(RTCP, PHONE_B)
    assert caller_rtp.written == [(RTCP, PHONE_A)]
    assert caller_rtcp.written == [] and callee_rtcp.written == []
    assert (session.rtcp_packets(Side.CALLER), session.rtcp_packets(Side.CALLEE)) == (1, 1)


def test_when_only_the_offer_muxes_the_answer_says_no_and_rtcp_keeps_its_own_ports(reactor):
    relay = relay_on(reactor, port_low=30000, port_high=30099)
    session = relay.open("k", CALLER, CALLEE)
    relay_description(session, Side.CALLER, MUX_OFFER, lambda host: False)
    answer = relay_description(session, Side.CALLEE, mux_answer(False), lambda host: False)
    assert b"rtcp-mux" not in answer  # so the caller must not multiplex either (RFC 5761 5.1.1)
    caller_rtcp, callee_rtcp = port(reactor, 30001), port(reactor, 30003)
    callee_rtcp.receive(RTCP, (PHONE_B[0], PHONE_B[1] + 1))
    assert caller_rtcp.written == [(RTCP, (PHONE_A[0], PHONE_A[1] + 1))]
    caller_rtcp.receive(RTCP, (PHONE_A[0], PHONE_A[1] + 1))
    assert callee_rtcp.written == [(RTCP, (PHONE_B[0], PHONE_B[1] + 1))]
