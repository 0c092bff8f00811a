"""
Calls to applications over SIP, in one process on a memory reactor: the
proxy hands the INVITE to the Signal service, the Router names an
application, a task answers, and the caller's ACK, RTP and BYE reach it.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import Event, TaskMode
from communigate.media.analysis import energy_fraction

from .conftest import CALLER_MEDIA, PBXHarness, frequency_of, offer, tone


def test_the_echo_application_answers_with_an_sdp_answer_and_a_contact(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    assert answer.status == 200
    assert answer.to().tag
    assert answer.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    assert answer.content_type == "application/sdp"
    assert b"m=audio 30000 RTP/AVP 0 101" in answer.body
    (task,) = pbx.pbx.tasks.values()
    assert task.program == "echo" and task.account == "postmaster@example.com"
    assert task.mode is TaskMode.CONNECTED


def test_the_caller_hears_its_own_tone_back_from_echo(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    peer = pbx.peer(answer)
    peer.send_audio(tone(440, 0.6))
    pbx.reactor.advance(0.2)
    packets = peer.received()
    heard = peer.heard(packets)
    assert len(packets) >= 30
    assert abs(frequency_of(heard[-3200:]) - 440) < 5
    assert energy_fraction(heard[-3200:], 440) > 0.8
    assert len({p.ssrc for p in packets}) == 1
    sequences = [p.sequence for p in packets]
    assert sequences == [(sequences[0] + i) & 0xFFFF for i in range(len(packets))]
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:])}
    assert steps == {160}


def test_media_goes_where_the_callers_packets_come_from(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com", body=offer(port=49999))
    answer = pbx.final()
    peer = pbx.peer(answer)
    peer.send_audio(tone(440, 0.2))
    pbx.reactor.advance(0.1)
    destinations = {address for _, address in peer.port.written}
    assert CALLER_MEDIA in destinations
    sent_before_latching = [a for _, a in peer.port.written if a == ("127.0.0.1", 49999)]
    assert len(sent_before_latching) <= 1


def test_a_bye_from_the_caller_ends_the_task_and_releases_the_port(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    port = pbx.media_port(answer)
    pbx.in_dialog("BYE", answer, cseq=2)
    bye_answer = pbx.final()
    assert bye_answer.status == 200
    pbx.turn()
    assert pbx.pbx.tasks == {}
    assert not port.listening
    assert len(pbx.core.dialogs) == 0


def test_a_request_for_an_ended_dialog_gets_481(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    pbx.in_dialog("BYE", answer, cseq=2)
    pbx.final()
    pbx.in_dialog("BYE", answer, cseq=3)
    assert pbx.final().status == 481


def test_an_application_nobody_installed_answers_404_and_is_logged(pbx, caplog_events):
    pbx.route("S:<nothing> = nosuchapp#postmaster")
    pbx.invite("sip:nothing@example.com")
    answer = pbx.final()
    assert answer.status == 404
    assert "No application nosuchapp" in answer.reason
    assert any("nosuchapp" in text for text in caplog_events)
    assert pbx.pbx.tasks == {}


@implementer(IPlugin, ICallApplication)
class Raising:
    name = "raising"
    description = "raises"

    def __init__(self, answer_first=False):
        self.answer_first = answer_first

    async def run(self, task):
        if self.answer_first:
            await task.accept_call()
        raise RuntimeError("application bug")


def test_an_application_that_raises_gets_its_call_refused_with_500_and_the_server_goes_on(caplog_events):
    harness = PBXHarness(applications={"raising": Raising()})
    try:
        harness.route("S:<boom> = raising#postmaster", "S:<echo> = echo#postmaster")
        harness.invite("sip:boom@example.com")
        assert harness.final().status == 500
        harness.turn()
        assert harness.pbx.tasks == {}
        assert harness.pbx.failures == {"raising": 1}
        assert any("application bug" in text or "raising raised" in text for text in caplog_events)
        harness.invite("sip:echo@example.com")
        assert harness.final().status == 200
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_an_answered_call_of_an_application_that_raises_gets_a_bye():
    harness = PBXHarness(applications={"raising": Raising(answer_first=True)})
    try:
        harness.route("S:<boom> = raising#postmaster")
        harness.invite("sip:boom@example.com")
        answer = harness.final()
        assert answer.status == 200
        (bye,) = harness.requests_to()
        assert bye.method == "BYE"
        assert bye.headers.get("Call-ID") == answer.call_id
        assert bye.from_().tag == answer.to().tag
        assert str(bye.uri) == "sip:caller@127.0.0.1:5070"
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_dtmf_sent_as_rfc4733_events_reaches_read_input_and_the_tone_for_it_is_heard(pbx):
    pbx.route("S:<dtmf> = dtmftest#postmaster")
    pbx.invite("sip:dtmf@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    peer = pbx.peer(answer)
    peer.send_audio(bytes(320 * 20))  # the beep plays meanwhile
    peer.received()
    peer.send_key("5")
    pbx.reactor.advance(0.3)
    heard = peer.heard()
    assert abs(frequency_of(heard[-3200:]) - 900) < 5
    (task,) = pbx.pbx.tasks.values()
    assert task.status == "keys 5"
    assert pbx.pbx.counters.dtmf == {"rfc4733": 1}


def test_in_band_dtmf_is_detected_when_telephone_events_were_not_negotiated(pbx):
    from communigate.media.tones import dtmf

    pbx.route("S:<dtmf> = dtmftest#postmaster")
    pbx.invite("sip:dtmf@example.com", body=offer(formats="0", events=False))
    answer = pbx.final()
    assert b"telephone-event" not in answer.body
    pbx.ack(answer)
    peer = pbx.peer(answer)
    peer.send_audio(bytes(320 * 15) + dtmf("7", 0.1) + bytes(320 * 10))
    pbx.reactor.advance(0.3)
    (task,) = pbx.pbx.tasks.values()
    assert task.status == "keys 7"
    assert abs(frequency_of(peer.heard()[-3200:]) - 1100) < 5


def test_a_hash_key_makes_dtmftest_hang_up(pbx):
    pbx.route("S:<dtmf> = dtmftest#postmaster")
    pbx.invite("sip:dtmf@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    peer = pbx.peer(answer)
    peer.send_key("#")
    (bye,) = pbx.requests_to()
    assert bye.method == "BYE"
    pbx.turn()
    assert pbx.pbx.tasks == {}


def test_an_offer_without_a_common_codec_gets_488(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    body = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40100 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    pbx.invite("sip:echo@example.com", body=body)
    answer = pbx.final()
    assert answer.status == 488
    pbx.turn()
    assert pbx.pbx.tasks == {}


def test_an_invite_without_sdp_gets_our_offer_and_the_answer_comes_in_the_ack(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com", body=b"")
    answer = pbx.final()
    assert answer.status == 200
    assert b"m=audio 30000 RTP/AVP 0 8 101" in answer.body
    answer_sdp = offer(formats="8 101")
    pbx.ack(answer, body=answer_sdp, content_type="application/sdp")
    (task,) = pbx.pbx.tasks.values()
    assert task.call.channel.codec == "PCMA"
    peer = pbx.peer(answer, payload_type=8, codec="PCMA")
    peer.send_audio(tone(440, 0.5))
    pbx.reactor.advance(0.2)
    assert abs(frequency_of(peer.heard()[-3200:]) - 440) < 5


def test_a_cancel_before_the_application_answers_reaches_it_as_a_disconnect(pbx):
    seen = []

    @implementer(IPlugin, ICallApplication)
    class Waits:
        name = "waits"
        description = "waits"

        async def run(self, task):
            await task.provision_call()
            seen.append(await task.read_input(None))

    harness = PBXHarness(applications={"waits": Waits()})
    try:
        harness.route("S:<wait> = waits#postmaster")
        harness.invite("sip:wait@example.com")
        ringing = [r for r in harness.responses() if r.status == 180]
        assert ringing and ringing[0].to().tag
        harness.cancel()
        harness.turn()
        codes = sorted(r.status for r in harness.responses())
        assert 487 in codes and 200 in codes
        assert isinstance(seen[0], Event) and seen[0].is_disconnect
        harness.turn()
        assert harness.pbx.tasks == {}
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_our_200_is_retransmitted_until_the_ack_and_the_call_ends_without_one(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.reactor.advance(0.5)
    again = [r for r in pbx.responses() if r.status == 200]
    assert again, "no retransmission after T1"
    pbx.reactor.advance(1.0)
    assert [r for r in pbx.responses() if r.status == 200]
    for _ in range(40):
        pbx.reactor.advance(1.0)
    requests = pbx.requests_to()
    assert any(r.method == "BYE" for r in requests)
    assert pbx.pbx.tasks == {}
    assert answer.status == 200


def test_an_ack_stops_the_retransmissions(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    for _ in range(10):
        pbx.reactor.advance(1.0)
    assert [r for r in pbx.responses() if r.status == 200] == []
    assert len(pbx.pbx.tasks) == 1


def test_a_reinvite_putting_the_task_on_hold_is_answered_recvonly_and_the_task_stops_sending(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    peer = pbx.peer(answer)
    pbx.in_dialog("INVITE", answer, cseq=2, body=offer(direction="sendonly"), content_type="application/sdp")
    hold = pbx.final()
    assert hold.status == 200
    assert b"a=recvonly" in hold.body
    pbx.in_dialog("ACK", answer, cseq=2)
    peer.received()
    pbx.reactor.advance(0.2)
    assert peer.received() == []
    pbx.in_dialog("INVITE", answer, cseq=3, body=offer(), content_type="application/sdp")
    resumed = pbx.final()
    assert b"a=sendrecv" in resumed.body
    pbx.reactor.advance(0.2)
    assert peer.received()


def test_an_out_of_order_request_gets_500(pbx):
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    pbx.in_dialog("OPTIONS", answer, cseq=5)
    assert pbx.final().status == 200
    pbx.in_dialog("OPTIONS", answer, cseq=4)
    assert pbx.final().status == 500


def test_info_dtmf_relay_is_a_key_press(pbx):
    pbx.route("S:<dtmf> = dtmftest#postmaster")
    pbx.invite("sip:dtmf@example.com")
    answer = pbx.final()
    pbx.ack(answer)
    pbx.in_dialog("INFO", answer, cseq=2, body=b"Signal=3\r\nDuration=160\r\n",
                  content_type="application/dtmf-relay")
    assert pbx.final().status == 200
    pbx.turn()
    (task,) = pbx.pbx.tasks.values()
    assert task.status == "keys 3"


def test_past_the_task_limit_a_call_to_an_application_gets_480(pbx):
    pbx.pbx.max_tasks = 1
    pbx.route("S:<echo> = echo#postmaster")
    pbx.invite("sip:echo@example.com")
    assert pbx.final().status == 200
    pbx.invite("sip:echo@example.com")
    answer = pbx.final()
    assert (answer.status, answer.reason) == (480, "Too many PBX tasks")
    result = pbx.core.interpreter.run(_postmaster(), "STARTPBXTASK postmaster echo")
    assert not result.ok and "none more now" in result.error


def _postmaster():
    from communigate.cli.context import CommandContext

    return CommandContext.for_account("postmaster@example.com")
