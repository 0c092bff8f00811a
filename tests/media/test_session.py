"""
The minimal RTP session over a fake datagram transport and a Clock:
stamping, counting, dropping malformed and foreign datagrams.
"""

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from communigate.media.rtp import RTPPacket, parse_rtp
from communigate.media.session import RTPSession

REMOTE = ("192.0.2.7", 40000)


def session(**kwargs):
    clock = Clock()
    received = []
    rtp = RTPSession(clock, 0, remote=REMOTE, on_packet=lambda p, t: received.append((p, t)),
                     ssrc=0x1234, sequence=65535, timestamp=2**32 - 160, **kwargs)
    transport = FakeDatagramTransport()
    rtp.makeConnection(transport)
    return rtp, transport, clock, received


def test_send_stamps_sequence_timestamp_and_ssrc_and_wraps():
    rtp, transport, _, _ = session()
    rtp.send(b"\xff" * 160, marker=True)
    rtp.send(b"\xff" * 160)
    rtp.send(b"\x0a\x0a\x00\xa0", payload_type=101, timestamp=7)
    packets = [(parse_rtp(data), address) for data, address in transport.written]
    assert [(p.sequence, p.timestamp, p.marker, p.payload_type) for p, _ in packets] == [
        (65535, 2**32 - 160, True, 0), (0, 0, False, 0), (1, 7, False, 101),
    ]
    assert all(p.ssrc == 0x1234 and a == REMOTE for p, a in packets)
    assert (rtp.sent_packets, rtp.sent_octets) == (3, 324)
    assert rtp.timestamp == 320


def test_sending_without_a_remote_is_an_error():
    rtp = RTPSession(Clock(), 0)
    with pytest.raises(RuntimeError):
        rtp.send(b"x")


def test_received_packets_are_parsed_timed_and_counted_per_source():
    rtp, _, clock, received = session()
    clock.advance(5.0)
    for seq in range(3):
        rtp.datagramReceived(RTPPacket(8, seq, 160 * seq, 99, b"abc").serialize(), REMOTE)
    assert [(p.sequence, t) for p, t in received] == [(0, 5.0), (1, 5.0), (2, 5.0)]
    assert rtp.received_packets == 3
    assert rtp.sources[99].received_count == 2  # the first was probation


def test_malformed_and_foreign_datagrams_are_dropped_and_counted():
    rtp, _, _, received = session()
    rtp.datagramReceived(b"\x00" * 20, REMOTE)
    rtp.datagramReceived(RTPPacket(0, 1, 2, 3).serialize(), ("203.0.113.9", 40000))
    assert received == [] and (rtp.malformed, rtp.foreign) == (1, 1)
