"""
Two RTP sessions over real UDP on 127.0.0.1: one sends 50 µ-law frames
(one second) of a 1 kHz tone paced at 20 ms, the other receives, decodes
and analyses them and finds the tone — and none of the 440 Hz it is not
being sent.
"""

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from communigate.media import analysis, g711
from communigate.media.session import RTPSession
from communigate.media.tones import Tone, ToneGenerator

FRAMES = 50
DEADLINE = 10.0


@pytest_twisted.inlineCallbacks
def test_a_tone_sent_over_udp_loopback_is_heard_by_the_other_session():
    arrived = []
    done = defer.Deferred()

    def on_packet(packet, arrival):
        arrived.append((packet, arrival))
        if len(arrived) == FRAMES and not done.called:
            done.callback(None)

    receiver = RTPSession(reactor, 0, on_packet=on_packet)
    sender = RTPSession(reactor, 0)
    receiving_port = reactor.listenUDP(0, receiver, interface="127.0.0.1")
    sending_port = reactor.listenUDP(0, sender, interface="127.0.0.1")
    sender.remote = ("127.0.0.1", receiving_port.getHost().port)
    receiver.remote = ("127.0.0.1", sending_port.getHost().port)
    tone = ToneGenerator(Tone((1000,), -10.0))
    sent = []

    def send_frame():
        packet = sender.send(g711.ulaw_encode(tone.frame()), marker=not sent)
        sent.append(packet)
        if len(sent) == FRAMES:
            loop.stop()

    loop = task.LoopingCall(send_frame)
    loop.clock = reactor
    try:
        loop.start(0.02)
        yield done.addTimeout(DEADLINE, reactor)
    finally:
        if loop.running:
            loop.stop()
        yield receiving_port.stopListening()
        yield sending_port.stopListening()

    packets = sorted((p for p, _ in arrived), key=lambda p: (p.sequence - sent[0].sequence) & 0xFFFF)
    assert [p.sequence for p in packets] == [p.sequence for p in sent]
    assert packets[0].marker and packets[0].ssrc == sender.ssrc
    audio = g711.ulaw_decode(b"".join(p.payload for p in packets))
    assert len(audio) == 2 * 160 * FRAMES
    assert analysis.dominant_frequency(audio) == pytest.approx(1000, abs=3)
    assert analysis.energy_fraction(audio, 1000) > 0.95
    assert analysis.energy_fraction(audio, 440) < 0.01
    stats = receiver.sources[sender.ssrc]
    assert stats.lost == 0 and stats.received_count == FRAMES - 1  # one packet of probation
    arrival_span = arrived[-1][1] - arrived[0][1]
    assert arrival_span >= 0.9  # paced at 20 ms, not sent in one burst
