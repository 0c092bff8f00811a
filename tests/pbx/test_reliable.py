"""
Reliable provisional responses (RFC 3262) for a task's calls: the pure
rules (which 1xx to PRACK, RAck, retransmission), then on the memory
reactor a call we place PRACKing bob's reliable 183s, a call we answer
sending its 180 reliably until the caller's PRACK, and 420 for an
extension a caller requires that we lack.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from communigate.pbx.events import CallError
from communigate.pbx.reliable import (
    ProvisionalAcks,
    ReliableProvisionals,
    option_tags,
    rack,
    reliable_rseq,
    unsupported_options,
)
from communigate.sip.message import Request, make_response

from .conftest import CALLER
from .test_task import BOB, made, start  # noqa: F401  (made is a fixture)
from .test_transparent import bob_sdp

RELIABLE = (("Require", "100rel"),)


def reliable(rseq, tag="bobtag", code=183):
    return code, RELIABLE + (("RSeq", str(rseq)),), tag


# -- the rules ---------------------------------------------------------------------------


def test_option_tags_rseq_rack_and_unsupported_options():
    headers = (("Supported", "replaces, 100rel"), ("k", "timer"), ("Require", "100rel"), ("Require", "Foo"))
    assert option_tags(headers, "Supported") == {"replaces", "100rel", "timer"}
    assert unsupported_options(headers) == ["foo"]
    assert unsupported_options((("Require", "100rel, replaces"),)) == []
    assert reliable_rseq(183, RELIABLE + (("RSeq", "77"),)) == 77
    assert reliable_rseq(183, (("RSeq", "77"),)) is None            # not required: not reliable
    assert reliable_rseq(100, RELIABLE + (("RSeq", "77"),)) is None  # 100 never is
    for bad in ("0", "-1", "x", str(2**31), "1 2"):
        assert reliable_rseq(180, RELIABLE + (("RSeq", bad),)) is None
    assert rack("77 1 INVITE") == (77, 1, "INVITE") and rack("77 INVITE") is None and rack(None) is None


def test_a_reliable_provisional_is_acted_on_when_first_or_next_and_each_early_dialog_counts_alone():
    acks = ProvisionalAcks()
    assert acks.judge(180, (), "bobtag") == (True, None)  # unreliable: acted on, no PRACK
    assert acks.judge(*reliable(5)) == (True, 5)
    assert acks.judge(*reliable(5)) == (False, None)      # a retransmission
    assert acks.judge(*reliable(7)) == (False, None)      # out of order
    assert acks.judge(*reliable(6)) == (True, 6)
    assert acks.judge(*reliable(900, tag="other")) == (True, 900)
    code, headers, _ = reliable(1)
    assert acks.judge(code, headers, None) == (False, None)  # no To tag: no early dialog


@given(st.lists(st.integers(1, 12), max_size=30))
def test_the_acted_on_rseqs_of_one_dialog_count_up_by_one(rseqs):
    acks, acted = ProvisionalAcks(), []
    for rseq in rseqs:
        act, prack = acks.judge(*reliable(rseq))
        assert act == (prack is not None)
        if act:
            acted.append(prack)
    assert acted == list(range(acted[0], acted[0] + len(acted))) if acted else True
    if rseqs:
        assert acted[:1] == rseqs[:1]


def test_a_reliable_provisional_is_retransmitted_until_its_prack_or_for_32_seconds():
    clock, sent, settled = Clock(), [], []
    provisionals = ReliableProvisionals(clock, sent.append, settled.append)
    rseq = provisionals.next_rseq()
    assert provisionals.next_rseq() == rseq + 1
    provisionals.send(rseq, "180")
    for step in (0.5, 1.0, 2.0, 4.0, 4.0):
        clock.advance(step)
    assert len(sent) == 6 and settled == []
    assert provisionals.prack(f"{rseq + 5} 1 INVITE", 1) == (481, False)
    assert provisionals.prack(f"{rseq} 2 INVITE", 1) == (481, False)          # another request's CSeq
    assert provisionals.prack(f"{rseq} 1 INVITE", 1) == (200, True)
    assert settled == [] and not provisionals.waiting  # told once the PRACK is answered
    provisionals.acknowledged()
    assert settled == [None]
    assert provisionals.prack(f"{rseq} 1 INVITE", 1) == (200, False)          # a repeated PRACK
    clock.advance(10)
    assert len(sent) == 6
    provisionals.send(rseq + 1, "183")
    clock.advance(0.5)
    while clock.getDelayedCalls():
        clock.advance(4)
    assert settled[-1].startswith("500 ") and clock.seconds() >= 10.5 + 32


# -- placing a call: bob's reliable provisionals are PRACKed ----------------------------


def answer_bob(harness, invite, code, headers=(), body=None):
    extra = [("Contact", f"<sip:bob@{BOB[0]}:{BOB[1]}>"), *headers]
    response = make_response(invite, code, to_tag="bobtag", headers=extra)
    if body is not None:
        response = response.with_body(body, "application/sdp")
    harness.port.receive(bytes(response), BOB)
    harness.turn()


def sent_to_bob(harness, method):
    return [m for m in harness.take(BOB) if isinstance(m, Request) and m.method == method]


def test_a_call_we_place_pracks_bobs_reliable_provisionals_once_each(made):  # noqa: F811
    events = []

    async def caller(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            events.append(getattr(item, "what", item))
            if getattr(item, "is_call_completed", False):
                await task.disconnect()
                return

    harness = made(caller=caller)
    harness.register("bob", BOB)
    start(harness, "caller")
    (invite,) = sent_to_bob(harness, "INVITE")
    assert "100rel" in invite.headers.get("Supported")
    answer_bob(harness, invite, 183, RELIABLE + (("RSeq", "41"),), body=bob_sdp())
    (prack,) = sent_to_bob(harness, "PRACK")
    assert prack.headers.get("RAck") == "41 1 INVITE" and prack.cseq().number == 2
    assert prack.to().tag == "bobtag" and str(prack.uri).startswith(f"sip:bob@{BOB[0]}:{BOB[1]}")
    answer_bob(harness, prack, 200)
    answer_bob(harness, invite, 183, RELIABLE + (("RSeq", "41"),), body=bob_sdp())  # retransmitted
    assert sent_to_bob(harness, "PRACK") == []
    answer_bob(harness, invite, 180, RELIABLE + (("RSeq", "42"),))
    (prack,) = sent_to_bob(harness, "PRACK")
    assert prack.headers.get("RAck") == "42 1 INVITE" and prack.cseq().number == 3
    answer_bob(harness, invite, 200, body=bob_sdp())
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert [(m.method, m.cseq().number) for m in sent] == [("ACK", 1), ("BYE", 4)]
    assert events.count("CallProvision") == 2 and "CallCompleted" in events


# -- answering a call: our 180 goes reliably until the caller's PRACK -------------------


def prack_from_caller(harness, answer_1xx, rseq, cseq=2, invite_cseq=1):
    message = harness.request(
        "PRACK", answer_1xx.headers.get("Contact").strip("<>"), user="caller", domain="example.net",
        to="sip:ringer@example.com", call_id=answer_1xx.call_id, cseq=cseq, to_tag=answer_1xx.to().tag,
        headers=[("RAck", f"{rseq} {invite_cseq} INVITE")],
    )
    harness.port.receive(message, CALLER)
    harness.turn()


def ringer(log, reliably=True):
    async def run(task):
        try:
            await task.provision_call(reliably=reliably)
        except CallError as error:
            log.append(str(error))
            return
        log.append("acknowledged")
        await task.accept_call()
        await task.read_input(None)

    return run


def test_a_reliable_180_is_retransmitted_until_the_callers_prack_and_then_the_call_is_answered(made):  # noqa: F811
    log = []
    harness = made(ringer=ringer(log))
    harness.route("S:<ringer> = ringer#postmaster")
    harness.invite("sip:ringer@example.com", headers=[("Supported", "100rel")])
    (ringing,) = [r for r in harness.responses() if r.status == 180]
    assert ringing.headers.get("Require") == "100rel" and ringing.to().tag
    rseq = int(ringing.headers.get("RSeq"))
    harness.reactor.advance(0.5)
    harness.reactor.advance(1.0)
    assert [r.headers.get("RSeq") for r in harness.responses() if r.status == 180] == [str(rseq)] * 2
    assert log == []
    prack_from_caller(harness, ringing, rseq + 1)  # acknowledges nothing we sent
    assert [r.status for r in harness.responses() if r.cseq().method == "PRACK"] == [481]
    prack_from_caller(harness, ringing, rseq, cseq=3)
    answers = harness.responses()
    assert [r.status for r in answers if r.cseq().method == "PRACK"] == [200]
    assert answers[0].cseq().method == "PRACK"  # answered before the INVITE's 200 it allows
    assert log == ["acknowledged"]
    assert [r.status for r in answers if r.cseq().method == "INVITE" and r.status >= 200] == [200]
    harness.reactor.advance(10)
    assert [r for r in harness.responses() if r.status == 180] == []  # no more retransmissions


def test_no_prack_within_32_seconds_rejects_the_call_with_500(made):  # noqa: F811
    log = []
    harness = made(ringer=ringer(log))
    harness.route("S:<ringer> = ringer#postmaster")
    harness.invite("sip:ringer@example.com", headers=[("Supported", "100rel")])
    for _ in range(40):
        harness.reactor.advance(1)
    assert harness.final().status == 500  # the ringing INVITE outlives its 32 s lifetime
    assert log and log[0].startswith("500 No PRACK")


def test_a_caller_without_100rel_gets_an_unreliable_180_and_one_requiring_it_always_a_reliable_one(made):  # noqa: F811
    log = []
    harness = made(ringer=ringer(log), plain=ringer(log, reliably=False))
    harness.route("S:<ringer> = ringer#postmaster", "S:<plain> = plain#postmaster")
    harness.invite("sip:ringer@example.com")
    answers = harness.responses()
    (ringing,) = [r for r in answers if r.status == 180]
    assert ringing.headers.get("Require") is None and ringing.headers.get("RSeq") is None
    assert log == ["acknowledged"] and answers[-1].status == 200
    harness.invite("sip:plain@example.com", headers=[("Require", "100rel"), ("Supported", "100rel")])
    (ringing,) = [r for r in harness.responses() if r.status == 180]
    assert ringing.headers.get("Require") == "100rel"
    assert log == ["acknowledged"]  # the plain program waits for the PRACK too


def test_an_invite_requiring_an_extension_we_lack_gets_420_with_unsupported(made):  # noqa: F811
    harness = made(ringer=ringer([]))
    harness.route("S:<ringer> = ringer#postmaster")
    harness.invite("sip:ringer@example.com", headers=[("Require", "timer, 100rel")])
    answer = harness.final()
    assert answer.status == 420 and answer.headers.get("Unsupported") == "timer"
    assert harness.pbx.tasks == {}


def test_a_prack_to_a_call_that_sent_nothing_reliably_gets_481(made):  # noqa: F811
    log = []
    harness = made(ringer=ringer(log))
    harness.route("S:<ringer> = ringer#postmaster")
    harness.invite("sip:ringer@example.com")
    answer = harness.final()
    harness.ack(answer)
    harness.in_dialog("PRACK", answer, cseq=2, headers=[("RAck", "1 1 INVITE")])
    assert [r.status for r in harness.responses() if r.cseq().method == "PRACK"] == [481]


def test_no_100rel_leaves_it_out_of_the_invite(made):  # noqa: F811
    async def caller(task):
        await task.start_call("bob@example.com", no_100rel=True)
        await task.read_input(None)

    harness = made(caller=caller)
    harness.register("bob", BOB)
    start(harness, "caller")
    (invite,) = sent_to_bob(harness, "INVITE")
    assert invite.headers.get("Supported") == "replaces"
