"""
A simple two-task bridge carries audio both ways, in a real C{twistd
communigate}: a sipp caller calls C{bridged@example.com}, which the
Router gives to C{gatewayincoming{bob,media}} (simple bridging: a
C{gatewayleg} task calls bob and every frame passes through the two
tasks' media channels, decoded); bob is a sipp UAS registered for the
call. Each phone's media is a Python RTP peer sending a tone: the
caller's 440 Hz, bob's 1 kHz.

  - the caller hears 1 kHz and not its own 440 Hz, bob hears 440 Hz and
    not his own 1 kHz; the caller's BYE reaches bob;
  - the same when bob hangs up: the caller's leg gets the BYE.
"""

from __future__ import annotations

import importlib.util
import os
import random

import pytest

from communigate.testing import start_server, stop_server


def _peers():
    path = os.path.join(os.path.dirname(__file__), "pbx_peers.py")
    spec = importlib.util.spec_from_file_location("integration_pbx_peers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = _peers()

CALLER_TONE, CALLEE_TONE = 440, 1000


@pytest.fixture
def bridge_server(tmp_path):
    low = random.randrange(30000, 60000, 200)
    server = start_server(tmp_path / "data", "--pbx", f"rtp:{low}-{low + 199}:interface=127.0.0.1")
    try:
        # `media`, not `bridge`: simple bridging through the two channels
        # whatever `bridge` alone comes to mean.
        for line in (
            'SETROUTERTABLE "S:<bridged> = gatewayincoming{bob,media}#postmaster"',
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT bob {Password = bpw;}",
        ):
            code, text = peers.cli(server, line)
            assert code == 200, (line, text)
        yield server
    finally:
        stop_server(server)


def both_hear_each_other(caller, callee) -> bool:
    return (peers.hears(caller.audio(), CALLEE_TONE, CALLER_TONE)
            and peers.hears(callee.audio(), CALLER_TONE, CALLEE_TONE))


def check_audio(caller_heard: bytes, callee_heard: bytes) -> None:
    assert peers.hears(caller_heard, CALLEE_TONE, CALLER_TONE), "the caller did not hear the callee's 1 kHz alone"
    assert peers.hears(callee_heard, CALLER_TONE, CALLEE_TONE), "the callee did not hear the caller's 440 Hz alone"
    assert peers.never_hears(caller_heard, CALLER_TONE), "the caller heard its own 440 Hz"
    assert peers.never_hears(callee_heard, CALLEE_TONE), "the callee heard its own 1 kHz"


def place(server, tmp_path, callee_scenario: str, caller_scenario: str):
    """Bob answers with C{callee_scenario}, the caller calls with C{caller_scenario}; both peers' audio."""
    bob_dir, caller_dir = tmp_path / "bob", tmp_path / "caller"
    bob_dir.mkdir()
    caller_dir.mkdir()
    with peers.RTPPeer(CALLER_TONE) as caller, peers.RTPPeer(CALLEE_TONE) as callee:
        bob = peers.answering_phone(server, bob_dir, "bob", "bpw", callee_scenario, callee.port)
        sipp = peers.call(server, caller_dir, "bridged", caller.port, caller_scenario)
        heard_both = caller.wait_for(lambda: both_hear_each_other(caller, callee))
        code, output = peers.finished(sipp)
        bob_code, bob_output = peers.finished(bob)
        caller_heard, callee_heard = caller.audio(), callee.audio()
    assert code == 0, output + peers.errors(caller_dir) + server.output()[-3000:]
    assert bob_code == 0, bob_output + peers.errors(bob_dir)
    assert heard_both, "the two phones did not hear each other through the bridge"
    check_audio(caller_heard, callee_heard)
    return caller_heard, callee_heard


def test_a_simple_bridge_carries_each_sides_tone_to_the_other_and_the_callers_bye_ends_it(
        bridge_server, tmp_path):
    caller_heard, callee_heard = place(bridge_server, tmp_path, "uas_media.xml", "uac_app_ringing.xml")
    # about three seconds of the call each way (a frame is 320 octets of L16)
    assert len(caller_heard) > 100 * 320 and len(callee_heard) > 100 * 320


def test_the_callees_bye_on_a_simple_bridge_ends_the_callers_leg_after_audio_both_ways(bridge_server, tmp_path):
    # uac_app_hung_up.xml passes only when the server's BYE reaches the caller.
    place(bridge_server, tmp_path, "uas_bridged_callee_hangs_up.xml", "uac_app_hung_up.xml")
