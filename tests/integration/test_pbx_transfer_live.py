"""
Transfers toward PBX tasks in a real C{twistd communigate}: sipp phones,
threaded Python RTP peers (the helpers of C{pbx_live_helpers.py}).

  - Replaces (RFC 3891): a phone in a call with C{echo}; a second phone
    sends an INVITE with Replaces naming that dialog: it gets 200 with SDP
    and hears its own 1 kHz echoed, the first phone gets a BYE; Replaces
    naming no dialog gets 481;
  - a peer's REFER (RFC 3515): the caller of C{echo} refers it to a sipp
    callee: 202, NOTIFYs (100, then 200 ending the subscription), the
    callee gets the INVITE (with Referred-By) and hears its own audio
    echoed by the task, the referrer gets a BYE;
  - C{gatewayincoming{DEST,mixer}}: the caller's RTP peer (440 Hz) and the
    callee's (1 kHz) each hear the other through the mixer.
"""

from __future__ import annotations

import pytest

from communigate.testing import free_port

from pbx_live_helpers import (
    RTPPeer,
    call,
    configure,
    connected_call,
    errors,
    finished,
    heard_tone,
    pbx_server,
    remote_party,
    replaces_header,
    router_table,
    sipp_callee,
    start_sipp_client,
)


@pytest.fixture
def server(tmp_path):
    with pbx_server(tmp_path) as (started, _):
        yield started


def route(server, *lines):
    configure(server, router_table(*lines))


def test_a_second_phone_takes_over_an_echo_call_with_replaces_and_the_first_gets_a_bye(server, tmp_path):
    route(server, "S:<echo> = echo#postmaster")
    with RTPPeer(440) as first, RTPPeer(1000) as second:
        replaced = call(server, tmp_path, "echo", first.port, "uac_app_replaced.xml")
        dialog = connected_call(server, "echo")
        assert dialog, "the echo task never answered"
        assert first.wait_for(lambda: heard_tone(first.audio(), 440)), "the first phone heard no echo"
        taking = start_sipp_client(server, tmp_path, "uac_replaces.xml",
                                   [f"127.0.0.1:{server.sip_port}", str(second.port)],
                                   replaces=replaces_header(dialog), replaced_party=remote_party(dialog))
        assert second.wait_for(lambda: heard_tone(second.audio(), 1000)), "the new phone heard no echo"
        code_taking, output_taking = finished(taking)
        code_replaced, output_replaced = finished(replaced)
        after = first.audio()[len(first.audio()) // 2:]
    assert code_replaced == 0, output_replaced + errors(tmp_path)
    assert code_taking == 0, output_taking + errors(tmp_path)
    assert not heard_tone(after, 1000)
    assert "replaced by" in server.output()


def test_replaces_naming_no_dialog_gets_481(server, tmp_path):
    nothing = start_sipp_client(server, tmp_path, "uac_replaces_nothing.xml", [f"127.0.0.1:{server.sip_port}"],
                                replaces="nosuchcall@127.0.0.1;to-tag=a;from-tag=b")
    code, output = finished(nothing)
    assert code == 0, output + errors(tmp_path)


def test_a_peers_refer_sends_the_echo_task_to_another_phone_with_notifies(server, tmp_path):
    route(server, "S:<echo> = echo#postmaster")
    port = free_port()
    with RTPPeer(440) as referrer, RTPPeer(1000) as target:
        callee = sipp_callee(tmp_path, "uas_media_hangs_up.xml", port, rtp_port=target.port)
        referring = start_sipp_client(server, tmp_path, "uac_app_refers.xml",
                                      ["echo", "example.com", str(referrer.port), f"sip:target@127.0.0.1:{port}"])
        assert target.wait_for(lambda: heard_tone(target.audio(), 1000), 15), "the new peer heard no echo"
        code_referring, output_referring = finished(referring)
        code_callee, output_callee = finished(callee)
    assert code_referring == 0, output_referring + errors(tmp_path)
    assert code_callee == 0, output_callee + errors(tmp_path / f"callee-{port}")
    assert "transferred to" in server.output()


def test_gatewayincoming_with_mixer_lets_caller_and_callee_hear_each_other(server, tmp_path):
    port = free_port()
    route(server, f"S:<incoming> = gatewayincoming{{sip:callee@127.0.0.1:{port},mixer}}#postmaster")
    with RTPPeer(440) as caller, RTPPeer(1000) as called:
        callee = sipp_callee(tmp_path, "uas_media.xml", port, rtp_port=called.port)
        calling = call(server, tmp_path, "incoming", caller.port, "uac_app_ringing.xml")
        assert caller.wait_for(lambda: heard_tone(caller.audio(), 1000), 15), "the caller never heard 1 kHz"
        assert called.wait_for(lambda: heard_tone(called.audio(), 440), 5), "the callee never heard 440 Hz"
        code_calling, output_calling = finished(calling)
        code_callee, output_callee = finished(callee)
    assert code_calling == 0, output_calling + errors(tmp_path)
    assert code_callee == 0, output_callee + errors(tmp_path / f"callee-{port}")
