"""
The media channel on a memory reactor and the core scheduler: pacing,
latching, DTMF both ways, playing, recording, bridging, offers.
"""

import pytest

from communigate.core.scheduler import Scheduler
from communigate.media import g711
from communigate.media.analysis import dominant_frequency, energy_fraction
from communigate.media.events import TelephoneEvent, event_code, parse_telephone_event
from communigate.media.offer_answer import NoCommonCodec, streams
from communigate.media.rtp import RTPPacket, parse_rtp
from communigate.media.sdp import parse_sdp
from communigate.media.tones import dtmf, sine
from communigate.pbx.channel import MediaChannel, MediaCounters, NoFreePorts, PortRange
from communigate.pbx.prompts import frames, tone_frames
from communigate.testing import MemoryUDPReactor

PEER = ("127.0.0.1", 41000)
#: One tick of the clock in these tests: 20 ms and a little, so that the
#: sum of many float steps never falls short of the scheduler's tick times
#: (a step that lands a hair before a tick would fold two ticks into one).
TICK = 0.02 + 1e-7


def sdp_offer(port=PEER[1], formats="0 8 101", events=True, direction=None):
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {port} RTP/AVP {formats}"]
    if events:
        lines += ["a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    if direction:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


class Setup:
    def __init__(self, low=30000, high=30009):
        self.reactor = MemoryUDPReactor()
        self.scheduler = Scheduler(self.reactor)
        self.ports = PortRange(low, high)
        self.counters = MediaCounters()
        self.keys = []
        self.played = []
        self.recorded = []

    def channel(self, **kwargs):
        return MediaChannel(
            reactor=self.reactor, scheduler=self.scheduler, ports=self.ports, interface="127.0.0.1",
            on_dtmf=lambda key, method: self.keys.append((key, method)),
            on_played=self.played.append,
            on_recorded=lambda token, pcm: self.recorded.append((token, pcm)),
            counters=self.counters, **kwargs,
        )

    def port_of(self, channel):
        return next(p for p in self.reactor.udp_ports if p.getHost().port == channel.port and p.listening)

    def ticks(self, count):
        for _ in range(count):
            self.reactor.advance(TICK)


@pytest.fixture
def setup():
    return Setup()


def sent(port, to=PEER):
    packets = [parse_rtp(data) for data, address in port.written if address == to]
    port.written[:] = []
    return packets


def feed(port, pcm, *, source=PEER, pt=0, codec="PCMU", seq=100, ts=8000, ssrc=7, tick=None):
    for index, start in enumerate(range(0, len(pcm), 320)):
        payload = g711.encode(codec, pcm[start:start + 320])
        port.receive(RTPPacket(pt, seq + index, ts + 160 * index, ssrc, payload).serialize(), source)
        if tick is not None:
            tick()
    return seq + len(pcm) // 320, ts + 160 * (len(pcm) // 320)


def test_a_channel_binds_an_even_port_and_its_rtcp_port(setup):
    channel = setup.channel()
    channel.open()
    assert channel.port == 30000
    bound = sorted(p.getHost().port for p in setup.reactor.udp_ports)
    assert bound == [30000, 30001]
    assert channel.address == "127.0.0.1"


def test_ports_go_round_the_range_and_run_out(setup):
    channels = [setup.channel() for _ in range(5)]
    for channel in channels:
        channel.open()
    assert [c.port for c in channels] == [30000, 30002, 30004, 30006, 30008]
    with pytest.raises(NoFreePorts):
        setup.channel().open()
    channels[1].close()
    again = setup.channel()
    again.open()
    assert again.port == 30002


def test_a_port_range_outside_the_registered_ports_is_refused():
    with pytest.raises(ValueError, match="1024-65535"):
        PortRange(100, 200)
    with pytest.raises(ValueError):
        PortRange(30000, 30000)


def test_the_answer_picks_the_first_offered_codec_and_telephone_events(setup):
    channel = setup.channel()
    answer = parse_sdp(channel.answer_offer(sdp_offer(formats="8 0 101")))
    (stream,) = streams(answer)
    assert stream.codec.encoding == "PCMA" and stream.event_payload_type == 101
    assert channel.codec == "PCMA" and channel.telephone_events
    assert channel.remote == PEER


def test_an_offer_without_g711_is_refused(setup):
    channel = setup.channel()
    with pytest.raises(NoCommonCodec):
        channel.answer_offer(sdp_offer(formats="18", events=False))


def test_frames_go_out_every_20_ms_with_steady_timestamps(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    setup.ticks(50)
    packets = sent(port)
    assert 49 <= len(packets) <= 50
    assert {p.payload_type for p in packets} == {0}
    assert {len(p.payload) for p in packets} == {160}
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(packets, packets[1:]))
    assert all((b.sequence - a.sequence) % 2**16 == 1 for a, b in zip(packets, packets[1:]))
    assert setup.counters.frames_sent == len(packets)


def test_a_skipped_tick_shows_as_a_gap_in_the_timestamps(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    setup.ticks(3)
    sent(port)
    setup.reactor.advance(0.1)  # four ticks late
    setup.ticks(1)
    packets = sent(port)
    gaps = [(b.timestamp - a.timestamp) % 2**32 for a, b in zip(packets, packets[1:])]
    assert sum(gaps) >= 160 * 5


def test_a_played_tone_is_what_the_peer_hears_and_its_end_is_reported(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    channel.play(tone_frames(1000, 400), token="t")
    setup.ticks(25)
    heard = b"".join(g711.decode("PCMU", p.payload) for p in sent(port))
    assert energy_fraction(heard[:6400], 1000) > 0.9
    assert setup.played == ["t"]


def test_stopping_playback_reports_nothing(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    channel.play(tone_frames(1000, 400), token="t")
    setup.ticks(5)
    assert channel.stop_playing()
    setup.ticks(30)
    assert setup.played == []


def test_the_channel_latches_to_where_the_peers_packets_come_from(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer(port=45000))
    port = setup.port_of(channel)
    source = ("127.0.0.1", 46000)
    feed(port, bytes(320 * 3), source=source)
    setup.ticks(5)
    assert channel.remote == source and channel.latched
    assert sent(port, to=source)
    feed(port, bytes(320), source=("127.0.0.1", 47000), seq=200, ts=90000)
    assert setup.counters.foreign == 1


def test_a_peer_named_by_a_host_name_is_sent_to_once_it_has_sent(setup):
    channel = setup.channel()
    offer = sdp_offer(port=45000).replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 phone.example.com")
    channel.answer_offer(offer)
    port = setup.port_of(channel)
    setup.ticks(5)
    assert port.written == []  # never resolved on the packet path
    source = ("127.0.0.1", 46000)
    feed(port, bytes(320 * 3), source=source)
    setup.ticks(5)
    assert channel.remote == source and sent(port, to=source)


def test_malformed_and_unexpected_packets_are_counted_and_dropped(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer(formats="0 101"))
    port = setup.port_of(channel)
    port.receive(b"\x80\x00", PEER)
    port.receive(RTPPacket(8, 1, 1, 1, bytes(160)).serialize(), PEER)
    assert setup.counters.malformed == 1
    assert setup.counters.unexpected_payload == 1
    assert not channel.latched


def test_rfc4733_events_are_reported_once_each(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    for key, start in (("1", 1000), ("#", 2000)):
        for duration, end in ((160, False), (320, False), (400, True), (400, True), (400, True)):
            payload = TelephoneEvent(event_code(key), end, 10, duration).serialize()
            port.receive(RTPPacket(101, start + duration, start, 9, payload, duration == 160).serialize(), PEER)
    assert setup.keys == [("1", "rfc4733"), ("#", "rfc4733")]
    assert setup.counters.dtmf == {"rfc4733": 2}


def test_in_band_keys_are_detected_without_telephone_events(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer(formats="0", events=False))
    port = setup.port_of(channel)
    feed(port, bytes(320 * 5) + dtmf("9", 0.1) + bytes(320 * 10), tick=lambda: setup.ticks(1))
    setup.ticks(10)
    assert setup.keys == [("9", "inband")]


def test_in_band_detection_switched_off_hears_no_keys_and_switched_on_again_does(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer(formats="0", events=False))
    assert channel.inband_dtmf and channel.detecting_inband
    port = setup.port_of(channel)
    channel.inband_dtmf = False
    assert not channel.detecting_inband
    seq, ts = feed(port, bytes(320 * 5) + dtmf("9", 0.1) + bytes(320 * 10), tick=lambda: setup.ticks(1))
    setup.ticks(10)
    assert setup.keys == []
    assert setup.counters.dtmf == {}
    channel.inband_dtmf = True
    assert channel.detecting_inband
    feed(port, bytes(320 * 5) + dtmf("3", 0.1) + bytes(320 * 10), seq=seq, ts=ts + 1600, tick=lambda: setup.ticks(1))
    setup.ticks(10)
    assert setup.keys == [("3", "inband")]


def test_a_channel_made_without_in_band_detection_never_runs_the_detector(setup):
    channel = setup.channel(inband_dtmf=False)
    channel.answer_offer(sdp_offer(formats="0", events=False))
    assert not channel.detecting_inband
    port = setup.port_of(channel)
    feed(port, bytes(320 * 5) + dtmf("9", 0.1) + bytes(320 * 10), tick=lambda: setup.ticks(1))
    setup.ticks(10)
    assert setup.keys == []


def test_in_band_detection_stays_off_while_telephone_events_are_negotiated(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    assert not channel.detecting_inband
    channel.inband_dtmf = True
    assert not channel.detecting_inband
    # A re-offer without telephone-event brings the detector back.
    channel.answer_offer(sdp_offer(formats="0", events=False))
    assert channel.detecting_inband


def test_keys_sent_as_rfc4733_events(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    channel.send_dtmf("4")
    setup.ticks(12)
    events = [p for p in sent(port) if p.payload_type == 101]
    assert events[0].marker
    decoded = [parse_telephone_event(p.payload) for p in events]
    assert {e.event for e in decoded} == {4}
    assert [e.end for e in decoded][-3:] == [True, True, True]
    assert len({p.timestamp for p in events}) == 1


def test_keys_sent_as_tones_without_telephone_events(setup):
    from communigate.media.inband import DTMFDetector

    channel = setup.channel()
    channel.answer_offer(sdp_offer(formats="0", events=False))
    port = setup.port_of(channel)
    channel.send_dtmf("5")
    setup.ticks(15)
    heard = b"".join(g711.decode("PCMU", p.payload) for p in sent(port))
    assert DTMFDetector().feed(heard) == ["5"]


def test_echo_sends_back_what_the_peer_sent(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    channel.loopback = True
    port = setup.port_of(channel)
    feed(port, sine((700,), 0.6), tick=lambda: setup.ticks(1))
    setup.ticks(10)
    heard = b"".join(g711.decode("PCMU", p.payload) for p in sent(port))
    assert abs(dominant_frequency(heard[len(heard) // 2 - 1600:len(heard) // 2 + 1600]) - 700) < 5


def test_a_recording_stops_at_its_limit_with_what_was_heard(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    channel.record(0.5, token="r")
    feed(port, sine((600,), 1.0), tick=lambda: setup.ticks(1))
    setup.ticks(10)
    ((token, pcm),) = setup.recorded
    assert token == "r" and len(pcm) == 8000
    assert abs(dominant_frequency(pcm[-3200:]) - 600) < 5


def test_bridged_channels_carry_audio_both_ways_across_codecs(setup):
    a, b = setup.channel(), setup.channel()
    a.answer_offer(sdp_offer(port=41000, formats="0"))
    b.answer_offer(sdp_offer(port=42000, formats="8"))
    a.bridge_to(b)
    pa, pb = setup.port_of(a), setup.port_of(b)
    a_peer, b_peer = ("127.0.0.1", 41000), ("127.0.0.1", 42000)
    tone_a, tone_b = sine((440,), 0.6), sine((1000,), 0.6)
    for start in range(0, len(tone_a), 320):
        feed(pa, tone_a[start:start + 320], source=a_peer, seq=10 + start // 320, ts=160 * (start // 320))
        feed(pb, tone_b[start:start + 320], source=b_peer, pt=8, codec="PCMA", seq=10 + start // 320,
             ts=160 * (start // 320))
        setup.ticks(1)
    setup.ticks(10)
    heard_by_b = b"".join(g711.decode("PCMA", p.payload) for p in sent(pb, to=b_peer))
    heard_by_a = b"".join(g711.decode("PCMU", p.payload) for p in sent(pa, to=a_peer))
    middle = slice(len(heard_by_b) // 2 - 1600, len(heard_by_b) // 2 + 1600)
    assert abs(dominant_frequency(heard_by_b[middle]) - 440) < 5
    assert abs(dominant_frequency(heard_by_a[middle]) - 1000) < 5
    a.unbridge()
    assert b.bridge is None


def test_a_hold_offer_is_sendonly_and_an_inactive_answer_stops_sending(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    held = parse_sdp(channel.make_offer("sendonly"))
    assert streams(held)[0].direction == "sendonly"
    channel.apply_answer(sdp_offer(direction="inactive"))
    sent(port)
    setup.ticks(5)
    assert sent(port) == []
    channel.make_offer("sendrecv")
    channel.apply_answer(sdp_offer())
    setup.ticks(5)
    assert sent(port)


def test_a_peer_putting_us_on_hold_stops_our_frames(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    answer = parse_sdp(channel.answer_offer(sdp_offer(direction="sendonly")))
    assert streams(answer)[0].direction == "recvonly"
    sent(port)
    setup.ticks(5)
    assert sent(port) == []


def test_closing_unbinds_and_stops_ticking(setup):
    channel = setup.channel()
    channel.answer_offer(sdp_offer())
    port = setup.port_of(channel)
    channel.close()
    assert not port.listening
    assert not setup.scheduler.is_running(channel)
    assert setup.counters.open == 0
    assert setup.ports.in_use == set()
    channel.close()


def test_prompt_frames_loop_and_limit():
    pcm = bytes(range(256)) * 5  # 1280 octets: 4 frames
    assert len(list(frames(pcm))) == 4
    assert len(list(frames(pcm, limit=10))) == 10
    looped = frames(pcm, loop=True)
    assert len([next(looped) for _ in range(9)]) == 9
    assert len(list(frames(pcm + b"x" * 10))) == 5
