"""
The media relay on real UDP ports of 127.0.0.1, driven by the reactor: two
RTP peers talk through one relay session -- the caller "behind NAT" (its
SDP names 10.0.0.5, it sends from 127.0.0.1) sends 440 Hz, the callee
1 kHz -- and each hears the other's tone; RTCP crosses on the odd ports;
a third socket's packets are dropped and counted; release closes every
port.  And a call whose two parties multiplex RTCP on their RTP ports
(RFC 5761, a=rtcp-mux in both SDPs, which the relay passes through):
each party's RTP and SR reach the other party's RTP port, and nothing
goes to their RTCP ports.
"""

import socket

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor, task
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from communigate.media import analysis, g711
from communigate.media.latch import Drop
from communigate.media.relay import LegAddress, MediaRelay, Side, relay_description
from communigate.media.relay_settings import RelaySettings
from communigate.media.rtcp import ReceiverReport, SenderReport, compound, parse_rtcp
from communigate.media.rtp import RTPPacket, is_rtcp, parse_rtp
from communigate.media.session import RTPSession
from communigate.media.tones import Tone, ToneGenerator

FRAMES = 50
LOOPBACK = LegAddress("127.0.0.1", "127.0.0.1")


class Configuration:
    def __init__(self, **settings):
        self.current = RelaySettings(**settings)


class Datagrams(DatagramProtocol):
    def __init__(self):
        self.received = []

    def datagramReceived(self, data, address):
        self.received.append((data, address))


def free_range(size=100):
    """A port range nothing listens on now (another test may still take a
    port of it; the relay skips ports it cannot bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    low = min(base, 65535 - size) & ~1
    return low, low + size - 1


def is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest_twisted.inlineCallbacks
def test_two_peers_hear_each_others_tone_through_the_relay_and_strangers_are_dropped():
    low, high = free_range()
    relay = MediaRelay(reactor, Configuration(port_low=low, port_high=high), registry=CollectorRegistry())
    session = relay.open("udp-test", LOOPBACK, LOOPBACK, "nat")
    caller_leg, callee_leg = session.ports(Side.CALLER, 0), session.ports(Side.CALLEE, 0)

    heard = {"caller": [], "callee": []}
    caller = RTPSession(reactor, 0, remote=("127.0.0.1", caller_leg),
                        on_packet=lambda packet, arrival: heard["caller"].append(packet))
    callee = RTPSession(reactor, 0, remote=("127.0.0.1", callee_leg),
                        on_packet=lambda packet, arrival: heard["callee"].append(packet))
    ports = [reactor.listenUDP(0, caller, interface="127.0.0.1"),
             reactor.listenUDP(0, callee, interface="127.0.0.1")]
    rtcp_sink, stranger = Datagrams(), Datagrams()
    ports.append(reactor.listenUDP(0, rtcp_sink, interface="127.0.0.1"))
    ports.append(reactor.listenUDP(0, stranger, interface="127.0.0.1"))
    callee_port = ports[1].getHost().port
    # What the two SDPs said: the caller names a private address it is not
    # at (so it is latched from wherever it sends), the callee its own.
    session.expect(Side.CALLER, 0, ("10.0.0.5", 4000), ("10.0.0.5", 4001), True)
    session.expect(Side.CALLEE, 0, ("127.0.0.1", callee_port),
                   ("127.0.0.1", ports[2].getHost().port), False)

    tones = {"caller": ToneGenerator(Tone((440,), -10.0)), "callee": ToneGenerator(Tone((1000,), -10.0))}
    sent = {"count": 0}

    def send_both():
        caller.send(g711.ulaw_encode(tones["caller"].frame()))
        callee.send(g711.ulaw_encode(tones["callee"].frame()))
        sent["count"] += 1
        if sent["count"] == FRAMES:
            loop.stop()

    loop = task.LoopingCall(send_both)
    loop.clock = reactor
    try:
        yield loop.start(0.02)
        yield task.deferLater(reactor, 0.3, lambda: None)  # the last packets in flight

        # RTCP from the caller's side crosses to the RTCP port the callee gave.
        report = compound(ReceiverReport(caller.ssrc), "alice@example.com")
        ports[3].write(report, ("127.0.0.1", caller_leg + 1))  # the first RTCP source latches
        yield task.deferLater(reactor, 0.1, lambda: None)
        assert rtcp_sink.received and rtcp_sink.received[0][0] == report
        assert rtcp_sink.received[0][1] == ("127.0.0.1", callee_leg + 1)

        # A stranger's packets to either RTP leg are dropped once both sides latched.
        for number in range(5):
            ports[3].write(b"\x80\x00" + bytes(10) + b"intruder", ("127.0.0.1", caller_leg))
            ports[3].write(b"\x80\x00" + bytes(10) + b"intruder", ("127.0.0.1", callee_leg))
        ports[3].write(b"\x00junk", ("127.0.0.1", callee_leg))
        yield task.deferLater(reactor, 0.2, lambda: None)
    finally:
        if loop.running:
            loop.stop()

    # The callee hears the caller's 440 Hz, the caller the callee's 1 kHz
    # (it may miss the first packets: it is reachable once it has sent).
    for name, frequency, other in (("callee", 440, 1000), ("caller", 1000, 440)):
        packets = sorted(heard[name], key=lambda p: p.sequence)
        assert len(packets) >= FRAMES - 5, (name, len(packets))
        audio = g711.ulaw_decode(b"".join(p.payload for p in packets))
        assert analysis.dominant_frequency(audio) == pytest.approx(frequency, abs=3)
        assert analysis.energy_fraction(audio, other) < 0.01
        assert not any(b"intruder" in p.payload for p in packets)
    assert heard["callee"][0].ssrc == caller.ssrc and heard["caller"][0].ssrc == callee.ssrc
    assert relay.drops[Drop.WRONG_SOURCE] == 10
    assert relay.drops[Drop.MALFORMED] == 1
    assert session.summary()["Caller"]["Latched"] == [f"127.0.0.1:{ports[0].getHost().port}"]
    caller_packets, _ = session.packets(Side.CALLER)
    assert caller_packets == FRAMES + 1  # and the RTCP report

    session.release("bye")
    for port in ports:
        yield port.stopListening()
    yield task.deferLater(reactor, 0.05, lambda: None)  # the reactor closes the sockets
    assert all(is_free(number) for number in (caller_leg, caller_leg + 1, callee_leg, callee_leg + 1))
    assert relay.sessions() == [] and relay.open_ports() == 0


def muxing_sdp(port):
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtcp-mux\r\n"
    ).encode()


def listen_pair():
    """A party's RTP socket on an even port and the socket on the port above
    (where its RTCP would go without mux), as (protocols, listening ports)."""
    low, high = free_range(200)
    for number in range(low, high, 2):
        rtp, rtcp = Datagrams(), Datagrams()
        try:
            first = reactor.listenUDP(number, rtp, interface="127.0.0.1")
        except CannotListenError:
            continue
        try:
            second = reactor.listenUDP(number + 1, rtcp, interface="127.0.0.1")
        except CannotListenError:
            first.stopListening()
            continue
        return (rtp, rtcp), (first, second)
    raise RuntimeError("no free even/odd UDP port pair")


@pytest_twisted.inlineCallbacks
def test_two_muxing_peers_get_each_others_rtp_and_rtcp_on_their_rtp_ports_through_the_relay():
    low, high = free_range()
    relay = MediaRelay(reactor, Configuration(port_low=low, port_high=high), registry=CollectorRegistry())
    session = relay.open("udp-mux", LOOPBACK, LOOPBACK, "nat")
    parties = {name: listen_pair() for name in ("caller", "callee")}
    number = {name: ports[0].getHost().port for name, (_, ports) in parties.items()}
    offer = relay_description(session, Side.CALLER, muxing_sdp(number["caller"]), lambda host: False)
    answer = relay_description(session, Side.CALLEE, muxing_sdp(number["callee"]), lambda host: False)
    assert b"a=rtcp-mux" in offer and b"a=rtcp-mux" in answer  # passed through: the parties agree
    # Each party sends where the other's SDP, as rewritten, told it to.
    leg = {"caller": session.ports(Side.CALLER, 0), "callee": session.ports(Side.CALLEE, 0)}
    assert f"m=audio {leg['callee']} ".encode() in offer and f"m=audio {leg['caller']} ".encode() in answer
    sent = {}
    for name, ssrc in (("caller", 0xA), ("callee", 0xB)):
        rtp = RTPPacket(0, 1, 160, ssrc, b"\xff" * 160).serialize()
        sr = compound(SenderReport(ssrc, 1 << 32, 160, 1, 160), f"{name}@example.com")
        for data in (rtp, sr):
            parties[name][1][0].write(data, ("127.0.0.1", leg[name]))
        sent[name] = [rtp, sr]
    yield task.deferLater(reactor, 0.3, lambda: None)
    try:
        for name, other in (("caller", "callee"), ("callee", "caller")):
            (rtp_in, rtcp_in), _ = parties[name]
            received = [data for data, _ in rtp_in.received]
            assert received == sent[other], name
            assert not is_rtcp(received[0]) and parse_rtp(received[0]).ssrc == parse_rtp(sent[other][0]).ssrc
            assert is_rtcp(received[1]) and isinstance(parse_rtcp(received[1])[0], SenderReport)
            assert {source for _, source in rtp_in.received} == {("127.0.0.1", leg[name])}
            assert rtcp_in.received == [], f"RTCP reached {name}'s RTCP port although both multiplex"
        assert (session.rtcp_packets(Side.CALLER), session.rtcp_packets(Side.CALLEE)) == (1, 1)
    finally:
        session.release("bye")
        for _, ports in parties.values():
            for port in ports:
                yield port.stopListening()
