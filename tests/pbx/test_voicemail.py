"""
The stock C{voicemail} application on the memory reactor: a caller leaves
a message (stored as a WAV, the account's message-waiting counts
updated), a full mailbox refuses, the owner hears and manages messages.
"""

import os

import pytest

from communigate.interfaces import ICallApplication
from communigate.media.analysis import dominant_frequency
from communigate.media.tones import sine
from communigate.media.wav import Audio, parse_wav, serialize_wav
from communigate.pbx.voicemail import Mailbox, VoiceMail, voicemail_settings
from communigate.presence.mwi import MessageCounts
from zope.interface.verify import verifyObject

from .conftest import CALLER, TICK, PBXHarness, offer


def run_for(harness, seconds):
    for _ in range(int(seconds / 0.02)):
        harness.reactor.advance(TICK)


@pytest.fixture
def vm(tmp_path):
    harness = PBXHarness(applications={"voicemail": VoiceMail(str(tmp_path))})
    harness.route("S:<vm> = voicemail#alice", "S:<vmfull> = voicemail{messages=1}#alice")
    harness.root = tmp_path
    yield harness
    harness.pbx.stopService()
    harness.stop()


def stored(harness):
    return Mailbox(str(harness.root), "alice@example.com")


def test_voicemail_provides_call_application():
    assert verifyObject(ICallApplication, VoiceMail())


def test_a_caller_leaves_a_message_stored_as_wav_and_the_counts_go_up(vm):
    watched = []
    vm.core.message_waiting.watch("alice@example.com", watched.append)
    vm.invite("sip:vm@example.com")
    answer = vm.final()
    assert answer.status == 200
    vm.ack(answer)
    peer = vm.peer(answer)
    run_for(vm, 0.5)
    greeting = peer.heard()
    assert abs(dominant_frequency(greeting[:3200]) - 440) < 5
    run_for(vm, 0.3)                      # the beep
    peer.send_audio(sine((1000,), 1.0))
    vm.in_dialog("BYE", answer, cseq=2)
    assert vm.final().status == 200
    (name,) = stored(vm).messages()
    assert name.startswith("new-")
    pcm = parse_wav((vm.root / "example.com" / "alice" / name).read_bytes()).to_l16()
    assert 0.6 < len(pcm) / 16000 <= 1.05
    assert abs(dominant_frequency(pcm[-6400:]) - 1000) < 10
    assert vm.core.message_waiting.counts("alice@example.com") == MessageCounts(new=1)
    assert watched[-1].new == 1


def test_a_message_is_cut_at_the_seconds_parameter(vm):
    vm.route("S:<vm> = voicemail{seconds=1}#alice")
    vm.invite("sip:vm@example.com")
    answer = vm.final()
    vm.ack(answer)
    peer = vm.peer(answer)
    run_for(vm, 0.8)
    peer.send_audio(sine((700,), 2.0))
    assert {r.method for r in vm.requests_to()} == {"BYE"}     # the task hung up at the limit
    (name,) = stored(vm).messages()
    pcm = parse_wav((vm.root / "example.com" / "alice" / name).read_bytes()).to_l16()
    assert abs(len(pcm) / 16000 - 1.0) < 0.05


def test_a_full_mailbox_refuses_the_call_with_486(vm):
    stored(vm).store(serialize_wav(Audio("L16", sine((500,), 0.2))), 1.0)
    vm.invite("sip:vmfull@example.com")
    final = vm.final()
    assert (final.status, final.reason) == (486, "Mailbox full")


def test_a_bad_parameter_is_a_clear_error():
    with pytest.raises(ValueError, match="seconds must be a whole number from 1 to 600"):
        voicemail_settings(("seconds=0",))
    assert voicemail_settings(("messages=3",)) == (120, 3)


def test_the_account_greeting_plays_when_present(vm):
    mailbox = stored(vm)
    os.makedirs(mailbox.path)
    with open(os.path.join(mailbox.path, "greeting.wav"), "wb") as f:
        f.write(serialize_wav(Audio("L16", sine((660,), 0.4))))
    vm.invite("sip:vm@example.com")
    answer = vm.final()
    peer = vm.peer(answer)
    run_for(vm, 0.3)
    assert abs(dominant_frequency(peer.heard()[:3200]) - 660) < 5


def owner_call(vm):
    response, cseq, _ = vm.authorized(
        "INVITE", "sip:vm@example.com", user="alice", call_id="owner@127.0.0.1",
        headers=[("Contact", "<sip:alice@127.0.0.1:5070>")], body=offer(), content_type="application/sdp",
    )
    vm.turn()
    answer = vm.final()
    assert answer.status == 200
    return answer, cseq


def test_the_owner_hears_messages_deletes_one_and_the_other_becomes_old(vm):
    mailbox = stored(vm)
    mailbox.store(serialize_wav(Audio("L16", sine((500,), 0.4))), 1.0)
    mailbox.store(serialize_wav(Audio("L16", sine((1200,), 0.4))), 2.0)
    vm.core.message_waiting.set_counts("alice@example.com", MessageCounts(new=2))
    answer, cseq = owner_call(vm)
    vm.in_dialog("ACK", answer, cseq=cseq)
    peer = vm.peer(answer)
    run_for(vm, 0.6)                      # two count beeps
    assert abs(dominant_frequency(peer.heard()[:1200]) - 800) < 10
    run_for(vm, 0.2 + 0.45)               # the beep, the first message
    first = peer.heard()
    assert abs(dominant_frequency(first[-4000:-800]) - 500) < 10
    peer.send_key("7")                    # delete it
    run_for(vm, 0.3 + 0.45)
    second = peer.heard()
    assert abs(dominant_frequency(second[-4000:-800]) - 1200) < 10
    peer.send_key("#")
    run_for(vm, 1.2)
    names = mailbox.messages()
    assert len(names) == 1 and names[0].startswith("old-")
    assert abs(dominant_frequency(mailbox.read(names[0])) - 1200) < 10
    assert vm.core.message_waiting.counts("alice@example.com") == MessageCounts(new=0, old=1)
    assert [r.method for r in vm.requests_to()] == ["BYE"]


def test_another_caller_than_the_owner_cannot_hear_the_messages(vm):
    mailbox = stored(vm)
    mailbox.store(serialize_wav(Audio("L16", sine((500,), 0.4))), 1.0)
    vm.invite("sip:vm@example.com")                # caller@example.net, not authenticated
    answer = vm.final()
    vm.ack(answer)
    peer = vm.peer(answer)
    run_for(vm, 0.5)
    assert abs(dominant_frequency(peer.heard()[:3200]) - 440) < 5   # the greeting, not the message


def test_deleting_the_account_removes_its_mailbox(vm):
    Mailbox(str(vm.root), "alice@example.com").store(b"RIFF", 1.0)
    vm.core.directory.delete_account("alice@example.com")
    assert not (vm.root / "example.com" / "alice").exists()
