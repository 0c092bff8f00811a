"""
The RTCP of one endpoint (RFC 3550 §6), pure: report timing with
reconsideration, SR/RR contents, report blocks of a received stream,
LSR/DLSR and the round-trip time, BYE, malformed packets.
"""

import itertools
import math

import pytest
from hypothesis import given, settings, strategies as st

from communigate.media.rtcp import (
    COMPENSATION,
    Goodbye,
    RTCPError,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    compound,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
)
from communigate.media.rtcp_session import RTCPSession, round_trip

OURS = 0x0A0B0C0D
PEER = 0x11223344
#: A start well past 1970, as a real clock's seconds would be.
T0 = 1_700_000_000.0


def draws(*values):
    cycle = itertools.cycle(values)
    return lambda: next(cycle)


def session(*values, **kwargs):
    return RTCPSession(OURS, "cname@test", random=draws(*values) if values else None, **kwargs)


def reports_over(rtcp, seconds, step=0.02, start=T0, packets=lambda now: 0):
    """Run the session on a 20 ms tick from C{start}; the report times."""
    rtcp.start(start)
    times = []
    for tick in range(int(seconds / step)):
        now = start + tick * step
        if rtcp.is_due(now, packets(now)):
            rtcp.report(now, rtp_timestamp=0, packets=packets(now), octets=0)
            times.append(now)
    return times


# -- timing --------------------------------------------------------------------

def test_the_first_report_comes_after_half_the_minimum_randomised():
    early, late = session(0.0), session(0.999999)
    early.start(T0)
    late.start(T0)
    assert early.due - T0 == pytest.approx(2.5 * 0.5 / COMPENSATION)
    assert late.due - T0 == pytest.approx(2.5 * 1.5 / COMPENSATION, rel=1e-5)


def test_two_parties_report_every_five_seconds_randomised_half_to_one_and_a_half():
    rtcp = session(0.5)
    rtcp.start(T0)
    first = rtcp.due
    assert rtcp.is_due(first)
    rtcp.report(first, rtp_timestamp=0, packets=10, octets=1600)
    assert rtcp.due - first == pytest.approx(5.0 / COMPENSATION)
    rtcp = session(0.0)
    rtcp.start(T0)
    rtcp.report(T0 + 3, rtp_timestamp=0, packets=10, octets=1600)
    assert rtcp.due - (T0 + 3) == pytest.approx(2.5 / COMPENSATION)


def test_reconsideration_puts_a_due_report_off_when_the_new_draw_is_longer():
    rtcp = session(0.0, 0.0, 1.0 - 1e-9, 0.0)
    rtcp.start(T0)  # first draw: 0.0
    rtcp.report(rtcp.due, rtp_timestamp=0, packets=1, octets=160)  # second draw: 0.0
    last, due = rtcp.last_report, rtcp.due
    assert not rtcp.is_due(due - 0.01)
    # Third draw, the longest interval: the report waits for it.
    assert not rtcp.is_due(due)
    assert rtcp.due == pytest.approx(last + 5 * 1.5 / COMPENSATION)
    # Fourth draw, the shortest: now it goes.
    assert rtcp.is_due(rtcp.due)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20))
def test_every_interval_stays_within_the_randomised_bounds(values):
    rtcp = session(*values)
    times = reports_over(rtcp, 60.0, packets=lambda now: int((now - T0) * 50))
    assert times
    assert 2.5 * 0.5 / COMPENSATION - 0.02 <= times[0] - T0 <= 2.5 * 1.5 / COMPENSATION + 0.02
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and all(5 * 0.5 / COMPENSATION - 0.02 <= gap <= 5 * 1.5 / COMPENSATION + 0.02 for gap in gaps)


def test_the_intervals_average_five_seconds():
    rtcp = RTCPSession(OURS, "c", random=__import__("random").Random(7).random)
    times = reports_over(rtcp, 600.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 4.5 <= sum(gaps) / len(gaps) <= 5.5


# -- what a report says ---------------------------------------------------------

def test_a_sender_report_carries_the_time_timestamp_and_counts_sent():
    rtcp = session(0.5)
    rtcp.start(T0)
    data = rtcp.report(T0 + 2.0, rtp_timestamp=123456, packets=100, octets=16000)
    sr, sdes = parse_rtcp(data)
    assert sr == SenderReport(OURS, ntp_timestamp(T0 + 2.0), 123456, 100, 16000, ())
    assert sdes == SourceDescription.with_cname(OURS, "cname@test")
    assert rtcp.sent == 1


def test_a_receiver_report_once_nothing_was_sent_for_two_intervals():
    rtcp = session(0.5)
    rtcp.start(T0)
    kinds = []
    for index, packets in enumerate((50, 100, 100, 100, 150)):
        data = rtcp.report(T0 + 5 * (index + 1), rtp_timestamp=0, packets=packets, octets=160 * packets)
        kinds.append(type(parse_rtcp(data)[0]))
    # Sent in the first two intervals; nothing in the third (the SR goes
    # on: "since the last report or the previous one") and the fourth.
    assert kinds == [SenderReport, SenderReport, SenderReport, ReceiverReport, SenderReport]


def test_a_session_that_never_sent_reports_with_a_receiver_report():
    rtcp = session(0.5)
    rtcp.start(T0)
    assert type(parse_rtcp(rtcp.report(T0 + 2, rtp_timestamp=0, packets=0, octets=0))[0]) is ReceiverReport


def expected_jitter(arrivals, timestamps, rate=8000):
    jitter, previous = 0.0, None
    for arrival, timestamp in zip(arrivals, timestamps):
        transit = arrival * rate - timestamp
        if previous is not None:
            jitter += (abs(transit - previous) - jitter) / 16
        previous = transit
    return jitter


def test_the_report_block_describes_a_received_stream_with_loss_and_jitter():
    rtcp = session(0.5)
    rtcp.start(T0)
    lost = {10, 11, 40, 77}
    sequences = [s for s in range(1000, 1100) if s - 1000 not in lost]
    # Alternating 0 / 8 ms of extra delay on a 20 ms stream.
    arrivals = [T0 + (s - 1000) * 0.02 + (0.008 if s % 2 else 0.0) for s in sequences]
    timestamps = [5000 + 160 * (s - 1000) for s in sequences]
    for sequence, timestamp, arrival in zip(sequences, timestamps, arrivals):
        rtcp.rtp_received(PEER, sequence, timestamp, arrival)
    data = rtcp.report(T0 + 2.1, rtp_timestamp=0, packets=0, octets=0)
    (block,) = parse_rtcp(data)[0].reports
    # Probation takes the first packet; counting starts at 1001.
    expected = 1099 - 1001 + 1
    assert block.ssrc == PEER
    assert block.highest_sequence == 1099
    assert block.cumulative_lost == len(lost)
    assert block.fraction_lost == (len(lost) << 8) // expected
    want = expected_jitter(arrivals[1:], timestamps[1:])
    assert block.jitter == int(want) and block.jitter > 30
    assert block.lsr == 0 and block.dlsr == 0
    assert rtcp.loss == pytest.approx(len(lost) / expected)
    assert rtcp.jitter == pytest.approx(want / 8000)


def test_no_report_block_for_a_source_not_heard_since_the_last_report():
    rtcp = session(0.5)
    rtcp.start(T0)
    for index in range(10):
        rtcp.rtp_received(PEER, index, 160 * index, T0 + 0.02 * index)
    assert parse_rtcp(rtcp.report(T0 + 3, rtp_timestamp=0, packets=0, octets=0))[0].reports
    assert parse_rtcp(rtcp.report(T0 + 8, rtp_timestamp=0, packets=0, octets=0))[0].reports == ()


def test_event_packets_count_for_loss_but_not_for_jitter():
    rtcp = session(0.5)
    rtcp.start(T0)
    for index in range(20):
        # RFC 4733 packets keep their event's start timestamp.
        rtcp.rtp_received(PEER, index, 8000, T0 + 0.02 * index, timing=index < 2)
    (block,) = parse_rtcp(rtcp.report(T0 + 1, rtp_timestamp=0, packets=0, octets=0))[0].reports
    assert block.highest_sequence == 19 and block.cumulative_lost == 0
    assert block.jitter < 10


def test_lsr_and_dlsr_come_from_the_peers_last_sender_report():
    rtcp = session(0.5)
    rtcp.start(T0)
    for index in range(5):
        rtcp.rtp_received(PEER, index, 160 * index, T0 + 0.02 * index)
    peer_ntp = ntp_timestamp(T0 + 0.5) + 12345  # the peer's clock, not ours
    rtcp.rtcp_received(compound(SenderReport(PEER, peer_ntp, 999, 5, 800), "peer"), T0 + 1.0)
    (block,) = parse_rtcp(rtcp.report(T0 + 1.25, rtp_timestamp=0, packets=0, octets=0))[0].reports
    assert block.lsr == ntp_middle(peer_ntp)
    assert block.dlsr == round(0.25 * 65536)
    assert rtcp.peer_sender.packets == 5 and rtcp.peer_sender.octets == 800


def test_a_sender_report_before_any_rtp_still_gives_the_lsr():
    rtcp = session(0.5)
    rtcp.start(T0)
    peer_ntp = ntp_timestamp(T0)
    rtcp.rtcp_received(compound(SenderReport(PEER, peer_ntp, 0, 0, 0), "peer"), T0)
    for index in range(5):
        rtcp.rtp_received(PEER, index, 160 * index, T0 + 0.02 * index)
    (block,) = parse_rtcp(rtcp.report(T0 + 1, rtp_timestamp=0, packets=0, octets=0))[0].reports
    assert block.lsr == ntp_middle(peer_ntp) and block.dlsr == 65536


def test_the_round_trip_time_comes_from_the_peers_block_about_us():
    rtcp = session(0.5, first_sequence=1000)
    rtcp.start(T0)
    sr = parse_rtcp(rtcp.report(T0 + 2.0, rtp_timestamp=0, packets=100, octets=16000))[0]
    # The peer held our SR for 150 ms; the network took 40 ms each way.
    block = ReportBlock(OURS, 12, 3, 1099, 40, ntp_middle(sr.ntp_timestamp), round(0.150 * 65536))
    rtcp.rtcp_received(compound(ReceiverReport(PEER, (block,)), "peer"), T0 + 2.0 + 0.04 + 0.15 + 0.04)
    assert rtcp.rtt == pytest.approx(0.08, abs=1e-4)
    report = rtcp.peer_report
    assert (report.fraction_lost, report.cumulative_lost, report.jitter) == (12, 3, 40)
    assert rtcp.peer_loss == pytest.approx(3 / 100)


def test_blocks_about_other_sources_and_without_lsr_give_no_round_trip():
    rtcp = session(0.5)
    rtcp.start(T0)
    other = ReportBlock(0x99, 0, 0, 0, 0, 0x1234, 0)
    rtcp.rtcp_received(compound(ReceiverReport(PEER, (other,)), "peer"), T0 + 1)
    assert rtcp.peer_report is None and rtcp.rtt is None
    rtcp.rtcp_received(compound(ReceiverReport(PEER, (ReportBlock(OURS, 0, 0, 5),)), "peer"), T0 + 1)
    assert rtcp.peer_report is not None and rtcp.peer_report.rtt is None and rtcp.rtt is None


def test_round_trip_is_none_for_a_block_from_the_future():
    block = ReportBlock(OURS, lsr=ntp_middle(ntp_timestamp(T0 + 10)))
    assert round_trip(block, T0) is None
    assert round_trip(ReportBlock(OURS, lsr=ntp_middle(ntp_timestamp(T0)), dlsr=65536), T0 + 1.5) == (
        pytest.approx(0.5, abs=1e-4)
    )


def test_a_goodbye_ends_the_reports():
    rtcp = session(0.5)
    rtcp.start(T0)
    data = rtcp.report(T0 + 3, rtp_timestamp=7, packets=3, octets=480, bye=True)
    packets = parse_rtcp(data)
    assert isinstance(packets[0], SenderReport) and packets[-1] == Goodbye((OURS,))
    assert rtcp.due is None and not rtcp.is_due(T0 + 100)


def test_the_peers_goodbye_is_noted():
    rtcp = session(0.5)
    rtcp.start(T0)
    for index in range(3):
        rtcp.rtp_received(PEER, index, 160 * index, T0 + 0.02 * index)
    rtcp.rtcp_received(compound(ReceiverReport(PEER), "peer", Goodbye((PEER,))), T0 + 1)
    assert rtcp.peer_left


@pytest.mark.parametrize("data", [
    b"",
    b"\x80\xc9\x00",
    b"\x80\xca\x00\x01\x00\x00\x00\x01",  # SDES first: not a compound packet
    b"\x80\xc8\x00\x01\x00\x00\x00\x01",  # SR too short
    b"\x80\xc9\x00\x07\x00\x00\x00\x01",  # length past the end
    b"\x40\xc9\x00\x01\x00\x00\x00\x01",  # version 1
])
def test_malformed_rtcp_is_counted_and_refused(data):
    rtcp = session(0.5)
    rtcp.start(T0)
    with pytest.raises(RTCPError):
        rtcp.rtcp_received(data, T0)
    assert (rtcp.malformed, rtcp.received) == (1, 0)
    assert rtcp.peer_report is None and rtcp.peer_sender is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_any_datagram_is_either_taken_or_counted_as_malformed(data, as_report):
    if as_report:  # a valid start, then anything
        data = ReceiverReport(PEER).serialize() + data
    rtcp = session(0.5)
    rtcp.start(T0)
    try:
        rtcp.rtcp_received(data, T0 + 1)
    except RTCPError:
        assert (rtcp.malformed, rtcp.received) == (1, 0)
    else:
        assert (rtcp.malformed, rtcp.received) == (0, 1)
    # And reporting goes on whatever came.
    assert parse_rtcp(rtcp.report(T0 + 2, rtp_timestamp=0, packets=0, octets=0))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(-(2**23), 2**23 - 1),
                       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                       st.integers(0, 2**32 - 1)), max_size=5),
    st.booleans(),
)
def test_any_well_formed_report_from_the_peer_is_taken(blocks, sender):
    reports = tuple(ReportBlock(*values) for values in blocks)
    packet = (SenderReport(PEER, ntp_timestamp(T0), 1, 2, 3, reports) if sender
              else ReceiverReport(PEER, reports))
    rtcp = session(0.5)
    rtcp.start(T0)
    rtcp.rtcp_received(compound(packet, "peer"), T0 + 1)
    about_us = [b for b in reports if b.ssrc == OURS]
    if about_us:
        assert rtcp.peer_report.cumulative_lost == about_us[-1].cumulative_lost
        assert rtcp.rtt is None or (0 <= rtcp.rtt < 2**15 and not math.isnan(rtcp.rtt))
    else:
        assert rtcp.peer_report is None
