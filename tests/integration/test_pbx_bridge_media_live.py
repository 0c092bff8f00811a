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

import pytest

from pbx_live_helpers import RTPPeer, answering_phone, call, configure, errors, finished, hears, never_hears, pbx_server

CALLER_TONE, CALLEE_TONE = 440, 1000


@pytest.fixture
def bridge_server(tmp_path):
    with pbx_server(tmp_path) as (server, _):
        # `media`, not `bridge`: simple bridging through the two channels
        # whatever `bridge` alone comes to mean.
        configure(
            server,
            'SETROUTERTABLE "S:<bridged> = gatewayincoming{bob,media}#postmaster"',
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT bob {Password = bpw;}",
        )
        yield server


def both_hear_each_other(caller, callee) -> bool:
    return (hears(caller.audio(), CALLEE_TONE, CALLER_TONE)
            and hears(callee.audio(), CALLER_TONE, CALLEE_TONE))


def check_audio(caller_heard: bytes, callee_heard: bytes) -> None:
    assert hears(caller_heard, CALLEE_TONE, CALLER_TONE), "the caller did not hear the callee's 1 kHz alone"
    assert hears(callee_heard, CALLER_TONE, CALLEE_TONE), "the callee did not hear the caller's 440 Hz alone"
    assert never_hears(caller_heard, CALLER_TONE), "the caller heard its own 440 Hz"
    assert never_hears(callee_heard, CALLEE_TONE), "the callee heard its own 1 kHz"


def place(server, tmp_path, callee_scenario: str, caller_scenario: str):
    """Bob answers with C{callee_scenario}, the caller calls with C{caller_scenario}; both peers' audio."""
    bob_dir, caller_dir = tmp_path / "bob", tmp_path / "caller"
    bob_dir.mkdir()
    caller_dir.mkdir()
    with RTPPeer(CALLER_TONE) as caller, RTPPeer(CALLEE_TONE) as callee:
        bob = answering_phone(server, bob_dir, "bob", "bpw", callee_scenario, callee.port)
        sipp = call(server, caller_dir, "bridged", caller.port, caller_scenario)
        heard_both = caller.wait_for(lambda: both_hear_each_other(caller, callee))
        code, output = finished(sipp)
        bob_code, bob_output = finished(bob)
        caller_heard, callee_heard = caller.audio(), callee.audio()
    assert code == 0, output + errors(caller_dir) + server.output()[-3000:]
    assert bob_code == 0, bob_output + errors(bob_dir)
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
