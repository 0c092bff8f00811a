"""
RTCP of a task's call end to end on a memory reactor: the echo task's
channel reports to the caller's RTCP port, the caller's reports give the
round-trip time, READNODESTATUS shows the figures and the call record
keeps them.
"""

import pytest

from communigate.media.rtcp import ReceiverReport, ReportBlock, SenderReport, compound, ntp_middle, ntp_seconds, parse_rtcp

from .conftest import CALLER_MEDIA, tone

CALLER_RTCP = (CALLER_MEDIA[0], CALLER_MEDIA[1] + 1)


def rtcp_port(pbx, answer):
    number = pbx.media_port(answer).getHost().port + 1
    return next(p for p in pbx.reactor.udp_ports if p.getHost().port == number and p.listening)


def test_an_echo_call_reports_rtcp_and_keeps_the_quality_in_its_call_record(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    peer = pbx.peer(answer)
    rtcp = rtcp_port(pbx, answer)
    (task_id,) = pbx.pbx.tasks
    # Four seconds of tone, one packet in fifty lost on the way.
    pcm = tone(440, 4.0)
    for index, start in enumerate(range(0, len(pcm), 320)):
        if index % 50 == 25:
            peer.sequence += 1
            peer.timestamp += 160
            pbx.reactor.advance(0.02 + 1e-7)
            continue
        peer.send_audio(pcm[start:start + 320])
    reports = [(parse_rtcp(data), address) for data, address in rtcp.written]
    assert reports, "no RTCP within four seconds"
    (sr, *_), address = reports[0]
    assert address == CALLER_RTCP
    assert isinstance(sr, SenderReport)
    assert {p.ssrc for p in peer.received()} == {sr.ssrc}
    (block,) = sr.reports
    assert block.ssrc == 0x1234 and block.cumulative_lost >= 1
    # The caller reports back, having held the SR for 60 ms.
    pbx.reactor.advance(0.1)
    rtt = pbx.reactor.seconds() - ntp_seconds(sr.ntp_timestamp) - 0.06
    about = ReportBlock(sr.ssrc, 0, 0, 0, 16, ntp_middle(sr.ntp_timestamp), round(0.06 * 65536))
    rtcp.receive(compound(ReceiverReport(0x1234, (about,)), "caller"), CALLER_RTCP)
    status = pbx.cli(f"READNODESTATUS {task_id}")["Call"]["Media"]["RTCP"]
    assert status["Received"] == "1" and int(status["Sent"]) >= 1
    assert float(status["RTT"].removesuffix("ms")) == pytest.approx(rtt * 1000, abs=0.1)
    assert status["PeerSSRC"] == "00001234" and status["Loss"].endswith("%")
    from prometheus_client import generate_latest

    metrics = generate_latest(pbx.core.metrics).decode()
    assert 'communigate_pbx_rtcp_total{direction="received"} 1.0' in metrics
    assert "communigate_pbx_rtcp_malformed_total 0.0" in metrics
    pbx.in_dialog("BYE", answer, cseq=2)
    assert pbx.final().status == 200
    pbx.turn()
    (record,) = [r for r in pbx.core.call_records.recent() if r.protocol == "pbx"]
    assert 1.5 <= record.rtcp_loss <= 2.5
    assert record.rtt_ms == pytest.approx(rtt * 1000, abs=0.1)
    assert record.jitter_ms is not None and record.jitter_ms < 5
    assert record.rtcp_peer_loss is None or record.rtcp_peer_loss >= 0
    data = record.as_data()
    assert data["RTT"].endswith("ms") and data["Loss"].endswith("%")


def test_a_caller_that_offers_rtcp_mux_gets_it_and_the_reports_on_its_rtp_port(pbx):
    from communigate.media.rtp import is_rtcp

    from .conftest import offer

    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com", body=offer() + b"a=rtcp-mux\r\n")
    answer = pbx.final()
    assert answer.status == 200 and b"a=rtcp-mux\r\n" in answer.body
    pbx.ack(answer)
    peer = pbx.peer(answer)
    rtcp = rtcp_port(pbx, answer)
    peer.send_audio(tone(440, 4.0))
    muxed = [(parse_rtcp(data), address) for data, address in peer.port.written if is_rtcp(data)]
    assert muxed, "no RTCP on the RTP port within four seconds"
    assert {address for _, address in muxed} == {CALLER_MEDIA}
    assert rtcp.written == []
    (task_id,) = pbx.pbx.tasks
    assert pbx.cli(f"READNODESTATUS {task_id}")["Call"]["Media"]["RTCP"]["Mux"] == "YES"
