"""
Mixer bridging and the conference application, on the memory reactor:
three callers in one room each hear the other two and never themselves.
"""

from __future__ import annotations

import pytest

from communigate.media.analysis import energy_fraction
from communigate.media.mixer import Mixer
from communigate.pbx.conference import Conference, conference_parameters
from communigate.pbx.events import CallError, Event

from .conftest import TICK, PBXHarness, offer, tone

SOURCES = [(("127.0.0.1", 5071 + n), ("127.0.0.1", 40200 + 2 * n)) for n in range(4)]


@pytest.fixture
def room():
    harness = PBXHarness(applications={"conference": Conference()})
    harness.route("S:<conf> = conference{sales}#postmaster", "S:<listen> = conference{sales,listen}#postmaster")
    yield harness
    harness.pbx.stopService()
    harness.stop()


def join(harness, n, uri="sip:conf@example.com"):
    signalling, media = SOURCES[n]
    harness.invite(uri, body=offer(port=media[1]), source=signalling)
    answer = harness.final(signalling)
    assert answer.status == 200
    harness.ack(answer, source=signalling)
    peer = harness.peer(answer)
    peer.source = media
    peer.sequence += 100 * n
    return answer, peer


def talk(harness, peers_and_tones, seconds):
    """Every peer sends its tone (0: silence), one frame a tick for all."""
    pcms = [(peer, tone(f, seconds) if f else bytes(int(seconds * 16000))) for peer, f in peers_and_tones]
    for start in range(0, len(pcms[0][1]), 320):
        for peer, pcm in pcms:
            peer.send_audio(pcm[start:start + 320], advance=False)
        harness.reactor.advance(TICK)


def press(harness, peer, key):
    """A key as RFC 4733 events, then 100 ms; the peer's clock goes on, as a phone's does."""
    peer.send_key(key)  # five ticks, three frames of timestamp
    settle(harness, 0.1)
    peer.timestamp += 160 * 7


def settle(harness, seconds=0.5):
    for _ in range(int(seconds / TICK)):
        harness.reactor.advance(TICK)


def test_three_callers_each_hear_the_other_two_and_not_themselves(room):
    (_, a), (_, b), (_, c) = join(room, 0), join(room, 1), join(room, 2)
    settle(room)  # the join tones
    for peer in (a, b, c):
        peer.received()
    talk(room, [(a, 440), (b, 1000), (c, 1500)], 1.0)
    for peer, own, others in ((a, 440, (1000, 1500)), (b, 1000, (440, 1500)), (c, 1500, (440, 1000))):
        heard = peer.heard()[-3200:]
        assert energy_fraction(heard, own) < 0.05
        for frequency in others:
            assert energy_fraction(heard, frequency) > 0.3
    (mixer,) = room.pbx.rooms.rooms.values()
    assert len(mixer.parties) == 3
    task_id = next(iter(room.pbx.tasks))
    status = room.cli(f"READNODESTATUS {task_id}")
    assert status["Mixer"] == "sales" and status["Status"] == "room sales"


def test_a_listen_only_caller_hears_the_room_and_is_not_heard(room):
    (_, a), (_, b) = join(room, 0), join(room, 1, "sip:listen@example.com")
    settle(room)
    a.received(), b.received()
    talk(room, [(a, 440), (b, 1000)], 0.6)
    assert energy_fraction(b.heard()[-3200:], 440) > 0.8
    assert energy_fraction(a.heard()[-3200:], 1000) < 0.05


def test_star_mutes_and_unmutes_a_caller(room):
    (_, a), (_, b) = join(room, 0), join(room, 1)
    settle(room)
    press(room, a, "*")
    b.received()
    talk(room, [(a, 440), (b, 0)], 0.6)
    assert energy_fraction(b.heard()[-3200:], 440) < 0.05
    press(room, a, "*")
    b.received()
    talk(room, [(a, 440), (b, 0)], 0.6)
    assert energy_fraction(b.heard()[-3200:], 440) > 0.8


def test_the_room_closes_when_its_last_caller_hangs_up(room):
    answer, _ = join(room, 0)
    settle(room)
    (mixer,) = room.pbx.rooms.rooms.values()
    assert mixer.running
    room.in_dialog("BYE", answer, source=SOURCES[0][0])
    settle(room, 0.1)
    assert room.pbx.rooms.rooms == {}
    assert not mixer.running


def test_a_room_with_a_pin_admits_the_right_one(room):
    room.cli('UPDATEACCOUNTSETTINGS postmaster {ConferencePINs={sales="47";};}')
    _, a = join(room, 0)
    settle(room)
    assert room.pbx.rooms.rooms == {}
    for key in "47#":
        a.send_key(key)
    settle(room)
    (mixer,) = room.pbx.rooms.rooms.values()
    assert len(mixer.parties) == 1


def test_a_room_with_a_pin_hangs_up_after_three_wrong_ones(room):
    room.cli('UPDATEACCOUNTSETTINGS postmaster {ConferencePINs={sales="47";};}')
    _, a = join(room, 0)
    settle(room)
    for _ in range(3):
        for key in "11#":
            a.send_key(key)
        settle(room)
    settle(room, 1.0)
    assert any(r.method == "BYE" for r in room.requests_to(SOURCES[0][0]))
    assert room.pbx.rooms.rooms == {}
    assert room.pbx.tasks == {}


def test_conference_parameters_name_the_room_and_listen_mode():
    assert conference_parameters(()) == ("main", False)
    assert conference_parameters(("sales",)) == ("sales", False)
    assert conference_parameters(("sales", "listen")) == ("sales", True)


class Scripted:
    name = "scripted"
    description = "runs the test's coroutine"

    def __init__(self, script):
        self.script = script

    async def run(self, task):
        await self.script(task)


def test_mixer_verbs_attach_a_given_mixer_mute_and_refuse_bridging():
    log = []
    mixer = Mixer()

    async def script(task):
        try:
            await task.attach_mixer(mixer)
        except CallError as error:
            log.append(str(error))
        await task.accept_call()
        await task.attach_mixer(mixer)
        log.append(task.mixer_attached() is mixer)
        try:
            await task.attach_mixer("other")
        except CallError as error:
            log.append(str(error))
        try:
            await task.start_bridge("1")
        except CallError as error:
            log.append(str(error))
        await task.mute_mixer(True)
        log.append(mixer.parties[task.id].mode)
        await task.detach_mixer()
        log.append(task.mixer_attached())
        try:
            await task.detach_mixer()
        except CallError as error:
            log.append(str(error))
        item = await task.read_input(None)
        assert isinstance(item, Event)

    harness = PBXHarness(applications={"scripted": Scripted(script)})
    try:
        harness.route("S:<s> = scripted#postmaster")
        harness.invite("sip:s@example.com")
        settle(harness, 0.1)
        assert log == ["no media channel", True, "already attached to a mixer", "attached to a mixer", "muted",
                       None, "not attached to a mixer"]
        assert mixer.parties == {}
    finally:
        harness.pbx.stopService()
        harness.stop()
