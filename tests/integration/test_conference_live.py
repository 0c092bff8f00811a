"""
The C{conference} application in a real C{twistd communigate}: sipp
places the calls, threaded Python RTP peers (the helpers of
C{pbx_live_helpers.py}) send tones and analyse what they hear.

  - three callers in one room, sending 440 Hz, 1 kHz and 1.5 kHz: each
    hears the other two and not its own tone;
  - a listen-only caller hears the room and is not heard;
  - a room with a PIN refuses a wrong one (the caller hears the low
    wrong-PIN tone and never the join tone) and admits the right one.
"""

from __future__ import annotations

import pytest

import pbx_live_helpers as live
from pbx_live_helpers import RTPPeer, call, configure, errors, finished, pbx_server, router_table


@pytest.fixture
def conference_server(tmp_path):
    with pbx_server(tmp_path) as (server, _):
        configure(
            server,
            router_table(
                "S:<conf> = conference{live}#postmaster",
                "S:<listen> = conference{live,listen}#postmaster",
                "S:<secret> = conference{secret}#postmaster",
            ),
            'UPDATEACCOUNTSETTINGS postmaster {ConferencePINs={secret="4711";};}',
        )
        yield server


def hears(pcm: bytes, others, own=None) -> bool:
    """Some 200 ms of C{pcm} holds every one of C{others} and not C{own} (a mixer's sum: lower shares)."""
    return live.hears(pcm, others, own, share=0.25, leak=0.05)


def never_hears(pcm: bytes, frequency: float) -> bool:
    """No 200 ms of C{pcm} holds a fifth or more of C{frequency}."""
    return live.never_hears(pcm, frequency, limit=0.2)


def test_three_callers_in_a_room_each_hear_the_other_two_and_not_themselves(conference_server, tmp_path):
    tones = (440, 1000, 1500)
    with RTPPeer(440) as a, RTPPeer(1000) as b, RTPPeer(1500) as c:
        peers = (a, b, c)
        calls = []
        for n, peer in enumerate(peers):
            workdir = tmp_path / f"caller{n}"
            workdir.mkdir()
            calls.append((workdir, call(conference_server, workdir, "conf", peer.port)))
        for peer, own in zip(peers, tones):
            others = [f for f in tones if f != own]
            assert peer.wait_for(lambda: hears(peer.audio(), others, own)), (
                f"the {own} Hz caller did not hear {others} without itself"
            )
        for workdir, sipp in calls:
            code, output = finished(sipp)
            assert code == 0, output + errors(workdir)
        heard = [peer.audio() for peer in peers]
    for pcm, own in zip(heard, tones):
        assert never_hears(pcm, own), f"the {own} Hz caller heard itself"


def test_a_listen_only_caller_hears_the_room_and_is_not_heard(conference_server, tmp_path):
    with RTPPeer(440) as talker, RTPPeer(1000) as listener:
        (tmp_path / "talker").mkdir()
        (tmp_path / "listener").mkdir()
        first = call(conference_server, tmp_path / "talker", "conf", talker.port)
        second = call(conference_server, tmp_path / "listener", "listen", listener.port)
        assert listener.wait_for(lambda: hears(listener.audio(), [440], 1000)), "the listener did not hear the room"
        for workdir, sipp in ((tmp_path / "talker", first), (tmp_path / "listener", second)):
            code, output = finished(sipp)
            assert code == 0, output + errors(workdir)
        assert len(talker.heard) > 80
        assert never_hears(talker.audio(), 1000), "the listen-only caller was heard"


def test_a_room_with_a_pin_refuses_a_wrong_one_and_admits_the_right_one(conference_server, tmp_path):
    with RTPPeer(0) as wrong, RTPPeer(0) as right:
        (tmp_path / "wrong").mkdir()
        (tmp_path / "right").mkdir()
        first = call(conference_server, tmp_path / "wrong", "secret", wrong.port)
        second = call(conference_server, tmp_path / "right", "secret", right.port)
        assert wrong.wait_for(lambda: hears(wrong.audio(), [660])), "no PIN prompt"
        assert right.wait_for(lambda: hears(right.audio(), [660])), "no PIN prompt"
        wrong.press("1234#")
        right.press("4711#")
        assert wrong.wait_for(lambda: hears(wrong.audio(), [300])), "the wrong PIN was not refused"
        assert right.wait_for(lambda: hears(right.audio(), [880])), "the right PIN did not join"
        for workdir, sipp in ((tmp_path / "wrong", first), (tmp_path / "right", second)):
            code, output = finished(sipp)
            assert code == 0, output + errors(workdir)
        assert never_hears(wrong.audio(), 880), "the wrong PIN joined"
