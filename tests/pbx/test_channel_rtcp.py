"""
A media channel's RTCP on a memory reactor and the core scheduler: SRs
matching the RTP sent, on the randomised interval, to the peer's RTCP
address; report blocks about what the peer sent; the peer's reports read
(LSR, round-trip time); malformed and foreign RTCP dropped and counted;
BYE on close.
"""

import pytest

from communigate.core.scheduler import Scheduler
from communigate.media.rtcp import (
    COMPENSATION,
    Goodbye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    compound,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
)
from communigate.media.rtp import RTPPacket, parse_rtp
from communigate.pbx.channel import MediaChannel, MediaCounters, PortRange
from communigate.testing import MemoryUDPReactor

PEER = ("127.0.0.1", 41000)
PEER_RTCP = ("127.0.0.1", 41001)
PEER_SSRC = 0x5EED
TICK = 0.02 + 1e-7
FIRST_LATEST = 2.5 * 1.5 / COMPENSATION + 0.05


def offer(port=PEER[1], rtcp=None, address="127.0.0.1", direction=None):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", f"c=IN IP4 {address}", "t=0 0",
             f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    if rtcp:
        lines.append(f"a=rtcp:{rtcp}")
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


class Setup:
    def __init__(self):
        self.reactor = MemoryUDPReactor()
        self.reactor.advance(1_700_000_000.0)  # a wall-clock-like start for NTP times
        self.scheduler = Scheduler(self.reactor)
        self.counters = MediaCounters()

    def channel(self):
        return MediaChannel(
            reactor=self.reactor, scheduler=self.scheduler, ports=PortRange(30000, 30009),
            interface="127.0.0.1", counters=self.counters,
        )

    def port(self, number):
        return next(p for p in self.reactor.udp_ports if p.getHost().port == number and p.listening)

    def ticks(self, count):
        for _ in range(count):
            self.reactor.advance(TICK)

    def seconds(self, seconds):
        self.ticks(int(seconds / 0.02))


@pytest.fixture
def setup():
    return Setup()


def rtcp_out(port):
    """Every RTCP compound packet the channel wrote, parsed, with its address."""
    out = [(parse_rtcp(data), address) for data, address in port.written]
    port.written[:] = []
    return out


class Peer:
    """The peer's RTP stream into the channel, 20 ms a packet, with losses."""

    def __init__(self, setup, channel, source=PEER):
        self.setup, self.port, self.source = setup, setup.port(channel.port), source
        self.sequence, self.timestamp = 100, 8000
        self.sent = 0

    def send(self, count, lose=()):
        for _ in range(count):
            if self.sequence not in lose:
                packet = RTPPacket(0, self.sequence, self.timestamp, PEER_SSRC, b"\xff" * 160)
                self.port.receive(packet.serialize(), self.source)
                self.sent += 1
            self.sequence += 1
            self.timestamp += 160
            self.setup.ticks(1)


def test_a_sender_report_matching_the_rtp_sent_reaches_the_peers_rtcp_port(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtp, rtcp = setup.port(channel.port), setup.port(channel.port + 1)
    packets = []
    start = setup.reactor.seconds()
    while not rtcp.written:
        setup.ticks(1)
        packets += [parse_rtp(data) for data, _ in rtp.written]
        rtp.written[:] = []
        assert setup.reactor.seconds() - start < FIRST_LATEST, "no RTCP in the first interval's bounds"
    (data, address), = rtcp.written
    assert address == PEER_RTCP
    sr, sdes = parse_rtcp(data)
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert sr.ssrc == channel.ssrc == packets[-1].ssrc
    assert sdes.chunks[0].ssrc == channel.ssrc and sdes.chunks[0].cname
    assert sr.packet_count == len(packets) == channel.frames_sent
    assert sr.octet_count == 160 * len(packets)
    # The SR's instant is the tick that sent the last frame: its timestamp.
    assert sr.rtp_timestamp == packets[-1].timestamp
    assert sr.ntp_timestamp == ntp_timestamp(setup.reactor.seconds())
    assert sr.reports == ()  # nothing heard from the peer yet
    assert setup.counters.rtcp_sent == 1
    assert 2.5 * 0.5 / COMPENSATION <= setup.reactor.seconds() - start


def test_reports_follow_every_two_to_six_seconds(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    times = []
    for _ in range(int(60 / 0.02)):
        setup.ticks(1)
        if rtcp.written:
            times.append(setup.reactor.seconds())
            rtcp.written[:] = []
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 9
    assert all(5 * 0.5 / COMPENSATION - 0.03 <= gap <= 5 * 1.5 / COMPENSATION + 0.03 for gap in gaps)
    assert len(set(round(gap, 2) for gap in gaps)) > 1  # randomised


def test_the_report_block_covers_the_peers_stream_with_its_losses(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    peer = Peer(setup, channel)
    peer.send(200, lose={120, 121, 150})
    setup.seconds(6)  # the first report is out by now, covering all of it
    reports = rtcp_out(rtcp)
    blocks = [b for packets, _ in reports for b in packets[0].reports]
    assert blocks and all(b.ssrc == PEER_SSRC for b in blocks)
    last = blocks[-1]
    assert last.highest_sequence == 299
    assert last.cumulative_lost == 3
    assert last.jitter < 8  # steady arrivals, one a tick
    quality = channel.rtcp.quality()
    assert quality["loss"] == pytest.approx(3 / 199)
    assert quality["jitter_ms"] < 20


def test_the_peers_sender_report_gives_lsr_and_dlsr(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    peer = Peer(setup, channel)
    peer.send(10)
    peer_ntp = 0xE0000000_12340000
    rtcp.receive(compound(SenderReport(PEER_SSRC, peer_ntp, 9000, 10, 1600), "peer"), PEER_RTCP)
    heard_at = setup.reactor.seconds()
    rtcp.written[:] = []
    while not rtcp.written:
        peer.send(1)
    (report, *_), _ = rtcp_out(rtcp)[0]
    (block,) = report.reports
    assert block.lsr == ntp_middle(peer_ntp)
    assert block.dlsr == pytest.approx((setup.reactor.seconds() - heard_at) * 65536, abs=2)


def test_the_round_trip_time_is_measured_from_the_peers_reports_and_shown(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    peer = Peer(setup, channel)
    while not rtcp.written:
        peer.send(1)
    (sr, *_), _ = rtcp_out(rtcp)[0]
    # The peer answers 300 ms later, having held our SR for 200 ms.
    peer.send(15)
    block = ReportBlock(channel.ssrc, 0, 2, (channel.rtcp.session.first_sequence + 99) & 0xFFFF, 80,
                        ntp_middle(sr.ntp_timestamp), round(0.2 * 65536))
    rtcp.receive(compound(ReceiverReport(PEER_SSRC, (block,)), "peer"), PEER_RTCP)
    quality = channel.rtcp.quality()
    assert quality["rtt_ms"] == pytest.approx(100, abs=2)
    assert quality["peer_jitter_ms"] == pytest.approx(10)
    assert quality["peer_loss"] == pytest.approx(0.02)
    status = channel.rtcp.status()
    assert status["RTT"].endswith("ms") and status["Received"] == "1"
    assert status["PeerSSRC"] == f"{PEER_SSRC:08X}"


def test_malformed_rtcp_is_dropped_and_counted(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    rtcp.receive(b"\x80\xc9\x00\x07\x00\x00", PEER_RTCP)
    rtcp.receive(b"\x80\xca\x00\x01\x00\x00\x00\x01", PEER_RTCP)  # SDES alone
    assert setup.counters.rtcp_received == 2
    assert setup.counters.rtcp_malformed == 2
    assert channel.rtcp.session.malformed == 2 and channel.rtcp.session.received == 0
    # A malformed packet latches nothing: ours still go to the SDP's port.
    setup.seconds(FIRST_LATEST)
    assert {address for _, address in rtcp_out(rtcp)} == {PEER_RTCP}


def test_rtcp_from_another_host_is_dropped_as_foreign(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    rtcp.receive(compound(ReceiverReport(PEER_SSRC), "x"), ("192.0.2.66", 41001))
    assert setup.counters.foreign == 1 and channel.rtcp.session.received == 0


def test_rtcp_goes_where_a_rtcp_says_and_then_where_the_peers_rtcp_comes_from(setup):
    channel = setup.channel()
    channel.answer_offer(offer(rtcp=45007))
    rtcp = setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    assert {address for _, address in rtcp_out(rtcp)} == {("127.0.0.1", 45007)}
    rtcp.receive(compound(ReceiverReport(PEER_SSRC), "peer"), ("127.0.0.1", 46001))
    setup.seconds(7)
    assert {address for _, address in rtcp_out(rtcp)} == {("127.0.0.1", 46001)}
    # A new SDP forgets the latch.
    channel.answer_offer(offer(rtcp=45009))
    setup.seconds(7)
    assert {address for _, address in rtcp_out(rtcp)} == {("127.0.0.1", 45009)}


def test_rtcp_multiplexed_on_the_rtp_port_is_read(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtp = setup.port(channel.port)
    rtp.receive(compound(SenderReport(PEER_SSRC, ntp_timestamp(1), 1, 2, 3), "peer"), PEER)
    assert channel.rtcp.session.peer_sender.packets == 2
    assert setup.counters.rtcp_received == 1


def test_a_held_channel_reports_with_receiver_reports(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    channel.answer_offer(offer(direction="sendonly"))  # the peer holds us: we stop sending
    setup.seconds(20)
    kinds = [type(packets[0]) for packets, _ in rtcp_out(rtcp)]
    assert kinds[0] is SenderReport and kinds[-1] is ReceiverReport


def test_closing_sends_a_goodbye(setup):
    channel = setup.channel()
    channel.answer_offer(offer())
    rtcp = setup.port(channel.port + 1)
    setup.ticks(10)
    channel.close()
    ((packets, address),) = rtcp_out(rtcp)
    assert address == PEER_RTCP
    assert isinstance(packets[0], SenderReport) and packets[-1] == Goodbye((channel.ssrc,))
    assert not rtcp.listening


def test_a_channel_that_never_negotiated_sends_no_rtcp(setup):
    channel = setup.channel()
    channel.open()
    rtcp = setup.port(channel.port + 1)
    setup.seconds(8)
    channel.close()
    assert rtcp.written == [] and setup.counters.rtcp_sent == 0


def test_behind_nat_rtcp_follows_the_host_rtp_came_from(setup):
    channel = setup.channel()
    channel.answer_offer(offer(address="10.0.0.5"))  # a private address in SDP
    peer = Peer(setup, channel, source=("198.51.100.7", 61000))
    rtcp = setup.port(channel.port + 1)
    peer.send(int(FIRST_LATEST / 0.02))
    assert {address for _, address in rtcp_out(rtcp)} == {("198.51.100.7", 61001)}
    # The NAT's RTCP mapping is another port: its first report latches ours.
    rtcp.receive(compound(ReceiverReport(PEER_SSRC), "peer"), ("198.51.100.7", 61555))
    peer.send(int(7 / 0.02))
    assert {address for _, address in rtcp_out(rtcp)} == {("198.51.100.7", 61555)}
    # From the SDP's private host, now that RTP latched elsewhere: foreign.
    rtcp.receive(compound(ReceiverReport(PEER_SSRC), "peer"), ("10.0.0.5", 41001))
    assert setup.counters.foreign == 1


def test_the_peers_goodbye_shows_in_the_status(setup):
    channel = setup.channel()
    assert channel.rtcp.status()["Sent"] == "0"  # a channel not yet negotiated has a status too
    channel.answer_offer(offer())
    peer = Peer(setup, channel)
    peer.send(5)
    setup.port(channel.port + 1).receive(
        compound(ReceiverReport(PEER_SSRC), "peer", Goodbye((PEER_SSRC,), "hanging up")), PEER_RTCP
    )
    status = channel.rtcp.status()
    assert status["PeerLeft"] == "YES" and status["PeerSSRC"] == f"{PEER_SSRC:08X}"
