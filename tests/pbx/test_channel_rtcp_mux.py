"""
A media channel's RTCP multiplexed on its RTP port (RFC 5761), on a
memory reactor and the core scheduler: what its offers and answers say,
where its reports go and what it reads, and the channel that keeps RTCP
apart when the other end does not agree.
"""

import pytest

from communigate.core.scheduler import Scheduler
from communigate.media.offer_answer import streams
from communigate.media.rtcp import COMPENSATION, Goodbye, ReceiverReport, SenderReport, compound, ntp_timestamp
from communigate.media.rtp import RTPPacket, is_rtcp, parse_rtp
from communigate.media.rtcp import parse_rtcp
from communigate.media.sdp import parse_sdp
from communigate.pbx.channel import MediaChannel, MediaCounters, PortRange
from communigate.testing import MemoryUDPReactor

PEER = ("127.0.0.1", 41000)
PEER_SSRC = 0x5EED
TICK = 0.02 + 1e-7
FIRST_LATEST = 2.5 * 1.5 / COMPENSATION + 0.05


def description(port=PEER[1], mux=True, address="127.0.0.1", formats="0 101", event_pt=101):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", f"c=IN IP4 {address}", "t=0 0",
             f"m=audio {port} RTP/AVP {formats}", f"a=rtpmap:{event_pt} telephone-event/8000"]
    if mux:
        lines.append("a=rtcp-mux")
    return ("\r\n".join(lines) + "\r\n").encode()


class Setup:
    def __init__(self):
        self.reactor = MemoryUDPReactor()
        self.reactor.advance(1_700_000_000.0)
        self.scheduler = Scheduler(self.reactor)
        self.counters = MediaCounters()

    def channel(self):
        return MediaChannel(
            reactor=self.reactor, scheduler=self.scheduler, ports=PortRange(30000, 30009),
            interface="127.0.0.1", counters=self.counters,
        )

    def port(self, number):
        return next(p for p in self.reactor.udp_ports if p.getHost().port == number and p.listening)

    def seconds(self, seconds):
        for _ in range(int(seconds / 0.02)):
            self.reactor.advance(TICK)


@pytest.fixture
def setup():
    return Setup()


def split(port):
    """What the channel wrote on C{port}: (RTP packets, RTCP compounds with addresses)."""
    rtp, rtcp = [], []
    for data, address in port.written:
        if is_rtcp(data):
            rtcp.append((parse_rtcp(data), address))
        else:
            rtp.append((parse_rtp(data), address))
    port.written[:] = []
    return rtp, rtcp


def test_the_channels_offer_asks_for_mux_and_keeps_its_rtcp_port(setup):
    channel = setup.channel()
    (info,) = streams(parse_sdp(channel.make_offer()))
    assert info.rtcp_mux and info.rtcp_port == channel.port + 1
    assert setup.port(channel.port + 1).listening


def test_an_answer_to_a_muxing_offer_muxes_and_reports_go_out_of_the_rtp_port(setup):
    channel = setup.channel()
    (info,) = streams(parse_sdp(channel.answer_offer(description())))
    assert info.rtcp_mux
    rtp, rtcp = setup.port(channel.port), setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    frames, reports = split(rtp)
    assert frames and reports, "no muxed report within the first interval"
    assert {address for _, address in reports} == {PEER}
    packets, _ = reports[0]
    assert isinstance(packets[0], SenderReport) and packets[0].ssrc == frames[0][0].ssrc
    assert rtcp.written == []
    assert channel.rtcp.status()["Mux"] == "YES"


def test_muxed_reports_follow_the_latched_rtp_source(setup):
    channel = setup.channel()
    channel.answer_offer(description(address="10.0.0.5"))  # behind NAT: RTP comes from elsewhere
    rtp = setup.port(channel.port)
    source = ("198.51.100.7", 61000)
    for sequence in range(int(FIRST_LATEST / 0.02)):
        rtp.receive(RTPPacket(0, 100 + sequence, 160 * sequence, PEER_SSRC, b"\xff" * 160).serialize(), source)
        setup.reactor.advance(TICK)
    _, reports = split(rtp)
    assert reports and {address for _, address in reports} == {source}
    (packets, _) = reports[-1]
    assert packets[0].reports[0].ssrc == PEER_SSRC


def test_a_muxed_sender_report_from_the_peer_is_read_on_the_rtp_port(setup):
    channel = setup.channel()
    channel.answer_offer(description())
    rtp = setup.port(channel.port)
    rtp.receive(compound(SenderReport(PEER_SSRC, ntp_timestamp(1), 1, 7, 9), "peer"), PEER)
    assert channel.rtcp.session.peer_sender.packets == 7
    assert setup.counters.rtcp_received == 1 and setup.counters.malformed == 0
    assert channel.frames_received == 0


def test_the_goodbye_goes_out_of_the_rtp_port_when_muxed(setup):
    channel = setup.channel()
    channel.answer_offer(description())
    rtp = setup.port(channel.port)
    setup.seconds(0.2)
    split(rtp)
    channel.close()
    _, reports = split(rtp)
    ((packets, address),) = reports
    assert address == PEER and packets[-1] == Goodbye((channel.ssrc,))


def test_no_mux_without_the_offer_asking_reports_go_to_the_rtcp_port(setup):
    channel = setup.channel()
    (info,) = streams(parse_sdp(channel.answer_offer(description(mux=False))))
    assert not info.rtcp_mux
    rtp, rtcp = setup.port(channel.port), setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    _, reports = split(rtp)
    assert reports == []
    assert {address for _, address in rtcp.written} == {(PEER[0], PEER[1] + 1)}
    assert "Mux" not in channel.rtcp.status()


def test_an_offer_with_a_payload_type_in_the_rtcp_range_is_answered_without_mux(setup):
    channel = setup.channel()
    answer = channel.answer_offer(description(formats="0 72", event_pt=72))
    assert b"rtcp-mux" not in answer
    assert channel.event_payload_type == 72
    rtcp = setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    assert rtcp.written


def test_our_offer_answered_with_mux_muxes_and_without_it_does_not(setup):
    channel = setup.channel()
    channel.make_offer()
    channel.apply_answer(description(mux=True))
    rtp, rtcp = setup.port(channel.port), setup.port(channel.port + 1)
    setup.seconds(FIRST_LATEST)
    assert split(rtp)[1] and rtcp.written == []
    # A re-offer answered without mux: back to the RTCP port.
    channel.make_offer()
    channel.apply_answer(description(mux=False))
    setup.seconds(7)
    assert split(rtp)[1] == []
    assert {address for _, address in rtcp.written} == {(PEER[0], PEER[1] + 1)}


def test_a_peer_that_sends_to_our_rtcp_port_despite_mux_is_answered_there(setup):
    channel = setup.channel()
    channel.answer_offer(description())
    rtp, rtcp = setup.port(channel.port), setup.port(channel.port + 1)
    rtcp.receive(compound(ReceiverReport(PEER_SSRC), "peer"), ("127.0.0.1", 41001))
    setup.seconds(FIRST_LATEST)
    assert split(rtp)[1] == []
    assert {address for _, address in rtcp.written} == {("127.0.0.1", 41001)}
