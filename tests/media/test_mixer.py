"""
The conference mixer: each party hears the others and not itself, in its
own codec; listen-only and muted parties hear without being heard; loud
rooms are scaled, not clipped; queues are bounded; the scheduler ticks it
every 20 ms while it has parties.
"""

import pytest
from twisted.internet.task import Clock

from communigate.core.scheduler import Scheduler
from communigate.media import g711
from communigate.media.analysis import energy_fraction
from communigate.media.mixer import FRAME_SAMPLES, LISTEN, MUTED, SILENCE, Mixer, MixerError
from communigate.media.pcm import to_samples
from communigate.media.tones import sine

FRAME = FRAME_SAMPLES * 2


def frames_of(frequency, count=10, level=-10.0):
    audio = sine([frequency], count * 0.02, level=level)
    return [audio[i * FRAME:(i + 1) * FRAME] for i in range(count)]


class Ear:
    """What one party receives, decoded back to L16."""

    def __init__(self, codec="L16"):
        self.codec = codec
        self.frames = []

    def __call__(self, payload):
        self.frames.append(payload if self.codec == "L16" else g711.decode(self.codec, payload))

    def heard(self):
        return to_samples(b"".join(self.frames))


def room(*parties):
    mixer = Mixer()
    ears = {}
    for name, codec, mode in parties:
        ears[name] = Ear(codec)
        mixer.add(name, codec, ears[name], mode)
    return mixer, ears


def play(mixer, sources, ticks=10):
    streams = {name: frames_of(frequency, ticks) for name, frequency in sources.items()}
    for tick in range(ticks):
        for name, frames in streams.items():
            mixer.feed(name, frames[tick])
        mixer.tick()


def test_every_party_hears_the_others_and_not_itself_in_its_own_codec():
    mixer, ears = room(("a", "PCMU", "talk"), ("b", "PCMA", "talk"), ("c", "L16", "talk"))
    play(mixer, {"a": 440, "b": 1000, "c": 1500})
    for name, own, others in (("a", 440, (1000, 1500)), ("b", 1000, (440, 1500)), ("c", 1500, (440, 1000))):
        heard = ears[name].heard()
        assert len(heard) == 10 * FRAME_SAMPLES
        assert energy_fraction(heard, own) < 0.01, name
        for frequency in others:
            assert energy_fraction(heard, frequency) > 0.3, (name, frequency)


def test_listen_only_and_muted_parties_hear_without_being_heard():
    mixer, ears = room(("a", "L16", "talk"), ("b", "L16", LISTEN), ("c", "L16", "talk"))
    play(mixer, {"a": 440, "b": 1000, "c": 1500})
    assert energy_fraction(ears["c"].heard(), 1000) < 0.01
    assert energy_fraction(ears["b"].heard(), 440) > 0.3 and energy_fraction(ears["b"].heard(), 1500) > 0.3
    ears["c"].frames.clear()
    mixer.set_mode("a", MUTED)
    play(mixer, {"a": 440, "b": 1000})
    assert max(abs(v) for v in ears["c"].heard()) == 0


def test_a_loud_room_is_scaled_down_not_wrapped():
    mixer, ears = room(("a", "L16", "talk"), ("b", "L16", "talk"), ("c", "L16", "talk"))
    loud = b"\xff\x7f" * FRAME_SAMPLES  # 32767 every sample
    for _ in range(3):
        mixer.feed("a", loud)
        mixer.feed("b", loud)
        mixer.tick()
    heard = ears["c"].heard()
    assert min(heard) > 0 and max(heard) <= 32767
    assert mixer.clipped_ticks == 3


def test_queues_are_bounded_and_a_missing_frame_is_silence():
    mixer, ears = room(("a", "L16", "talk"), ("b", "L16", "talk"))
    for frame in frames_of(440, 10):
        mixer.feed("a", frame)
    assert len(mixer.parties["a"].queue) == mixer.max_queue and mixer.parties["a"].dropped == 7
    for _ in range(5):
        mixer.tick()
    assert ears["b"].frames[-1] == SILENCE and mixer.parties["b"].silent_ticks == 5


def test_bad_parties_and_frames_are_refused():
    mixer, _ = room(("a", "L16", "talk"))
    with pytest.raises(MixerError, match="codec"):
        mixer.add("x", "G729", print)
    with pytest.raises(MixerError, match="already"):
        mixer.add("a", "L16", print)
    with pytest.raises(MixerError, match="octets"):
        mixer.feed("a", b"\x00" * 10)
    small = Mixer(max_parties=1)
    small.add("a", "L16", print)
    with pytest.raises(MixerError, match="full"):
        small.add("b", "L16", print)


def test_the_scheduler_ticks_the_room_while_it_has_parties():
    clock = Clock()
    scheduler = Scheduler(clock)
    mixer = Mixer()
    scheduler.start(mixer)
    ear = Ear()
    mixer.add("a", "L16", ear)
    mixer.add("b", "L16", Ear())
    for _ in range(50):
        clock.advance(0.02)
    assert 45 <= len(ear.frames) <= 51  # a tick a float hair late waits for the next advance
    mixer.remove("a")
    mixer.remove("b")
    ticks = mixer.ticks
    for _ in range(10):
        clock.advance(0.02)
    assert mixer.ticks == ticks
