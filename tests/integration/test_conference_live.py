"""
The C{conference} application in a real C{twistd communigate}: sipp
places the calls, threaded Python RTP peers (the helpers of
C{test_pbx_live.py}) send tones and analyse what they hear.

  - three callers in one room, sending 440 Hz, 1 kHz and 1.5 kHz: each
    hears the other two and not its own tone;
  - a listen-only caller hears the room and is not heard;
  - a room with a PIN refuses a wrong one (the caller hears the low
    wrong-PIN tone and never the join tone) and admits the right one.
"""

from __future__ import annotations

import importlib.util
import os
import random

import pytest

from communigate.admin.client import CLIClient
from communigate.media.analysis import energy_fraction
from communigate.testing import start_server, stop_server


def _pbx_live():
    path = os.path.join(os.path.dirname(__file__), "test_pbx_live.py")
    spec = importlib.util.spec_from_file_location("pbx_live_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _pbx_live()
RTPPeer, call, finished, errors, windows, cli = (
    _helpers.RTPPeer, _helpers.call, _helpers.finished, _helpers.errors, _helpers.windows, _helpers.cli,
)


@pytest.fixture
def conference_server(tmp_path):
    low = random.randrange(30000, 60000, 200)
    server = start_server(tmp_path / "data", "--pbx", f"rtp:{low}-{low + 199}:interface=127.0.0.1")
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
            client.login("postmaster", server.postmaster_password)
            table = "\\e".join([
                "S:<conf> = conference{live}#postmaster",
                "S:<listen> = conference{live,listen}#postmaster",
                "S:<secret> = conference{secret}#postmaster",
            ])
            assert client.command(f'SETROUTERTABLE "{table}"')[0] == 200
            assert client.command('UPDATEACCOUNTSETTINGS postmaster {ConferencePINs={secret="4711";};}')[0] == 200
        yield server
    finally:
        stop_server(server)


def hears(pcm: bytes, others, own=None) -> bool:
    """Some 200 ms of C{pcm} holds every one of C{others} and not C{own}."""
    for window in windows(pcm):
        if all(energy_fraction(window, f) > 0.25 for f in others) and (
            own is None or energy_fraction(window, own) < 0.05
        ):
            return True
    return False


def never_hears(pcm: bytes, frequency: float) -> bool:
    return all(energy_fraction(window, frequency) < 0.2 for window in windows(pcm))


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
