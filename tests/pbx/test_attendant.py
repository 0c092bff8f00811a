"""
The stock C{attendant} application on the memory reactor: a menu key or
an extension bridges the caller to a phone (through C{bridgedcall}), a
caller who chooses nothing reaches the C{timeout} entry or is hung up,
and a hang-up on either side ends the other leg.
"""

import pytest
from zope.interface.verify import verifyObject

from communigate.interfaces import ICallApplication
from communigate.pbx.attendant import Attendant, BridgedCall, attendant_menu
from communigate.sip.message import Request, make_response

from .conftest import CALLER, TICK, PBXHarness, offer

BOB = ("127.0.0.1", 5090)
CAROL = ("127.0.0.1", 5092)


def run_for(harness, seconds):
    for _ in range(int(seconds / 0.02)):
        harness.reactor.advance(TICK)


@pytest.fixture
def att():
    harness = PBXHarness(applications={"attendant": Attendant(), "bridgedcall": BridgedCall()})
    harness.register("bob", BOB)
    harness.register("carol", CAROL)
    harness.route("S:<main> = attendant{1=alice,2=bob,timeout=carol}#postmaster",
                  "S:<plain> = attendant#postmaster",
                  "S:<bad> = attendant{x=bob}#postmaster")
    yield harness
    harness.pbx.stopService()
    harness.stop()


def invites_at(harness, source):
    return [m for m in harness.take(source) if isinstance(m, Request) and m.method == "INVITE"]


def answer_invite(harness, invite, source, user):
    response = make_response(invite, 200, to_tag=f"{user}tag", headers=[
        ("Contact", f"<sip:{user}@{source[0]}:{source[1]}>"), ("Record-Route", invite.headers.get("Record-Route"))])
    harness.port.receive(bytes(response.with_body(offer(port=source[1] + 30000, formats="0 101"), "application/sdp")),
                         source)
    harness.turn()


def caller_connected(harness, uri="sip:main@example.com"):
    harness.invite(uri)
    answer = harness.final()
    assert answer.status == 200
    harness.ack(answer)
    return answer, harness.peer(answer)


def test_the_applications_provide_call_application():
    assert verifyObject(ICallApplication, Attendant())
    assert verifyObject(ICallApplication, BridgedCall())


def test_the_menu_comes_from_name_value_parameters():
    assert attendant_menu(("1=sales", "2=support@example.org", "timeout=operator", "greeting=en/main")) == (
        {"1": "sales", "2": "support@example.org"}, "operator", "en/main")
    with pytest.raises(ValueError, match="the names are 0-9"):
        attendant_menu(("x=bob",))
    with pytest.raises(ValueError, match="is not name=value"):
        attendant_menu(("bob",))


def test_a_bad_menu_answers_500(att):
    att.invite("sip:bad@example.com")
    assert att.final().status == 500


def test_a_menu_key_bridges_the_caller_and_bye_from_the_callee_ends_the_caller(att):
    answer, peer = caller_connected(att)
    run_for(att, 0.2)
    peer.send_key("2")
    run_for(att, 0.1)
    (invite,) = invites_at(att, BOB)
    assert str(invite.uri).startswith("sip:bob@")
    answer_invite(att, invite, BOB, "bob")
    statuses = [t.status for t in att.pbx.tasks.values() if t.program == "attendant"]
    assert statuses == ["connected to bob@example.com"]
    bye = att.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=1,
                      from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
    att.port.receive(bye, BOB)
    att.turn()
    assert "BYE" in [r.method for r in att.requests_to()]
    assert att.pbx.tasks == {} or all(t.program != "attendant" for t in att.pbx.tasks.values())


def test_bye_from_the_caller_ends_the_bridged_leg(att):
    answer, peer = caller_connected(att)
    peer.send_key("2")
    (invite,) = invites_at(att, BOB)
    answer_invite(att, invite, BOB, "bob")
    att.take(BOB)
    att.in_dialog("BYE", answer, cseq=2)
    assert att.final().status == 200
    run_for(att, 0.1)
    assert "BYE" in [m.method for m in att.take(BOB) if isinstance(m, Request)]
    assert att.pbx.tasks == {}


def test_an_extension_number_dialled_with_hash_reaches_the_telnum_owner(att):
    att.core.directory.set_account_telnums("carol@example.com", ["201"])
    answer, peer = caller_connected(att, "sip:plain@example.com")
    for key in "201#":
        peer.send_key(key)
    (invite,) = invites_at(att, CAROL)
    assert str(invite.uri).startswith("sip:carol@")


def test_an_unknown_extension_plays_congestion_and_the_menu_again(att):
    answer, peer = caller_connected(att, "sip:plain@example.com")
    for key in "999#":
        peer.send_key(key)
    run_for(att, 0.1)
    (task,) = [t for t in att.pbx.tasks.values() if t.program == "attendant"]
    assert task.status == "no extension 999"
    assert invites_at(att, BOB) == [] and invites_at(att, CAROL) == []


def test_a_failed_call_returns_to_the_menu(att):
    answer, peer = caller_connected(att)
    peer.send_key("2")
    (invite,) = invites_at(att, BOB)
    att.port.receive(bytes(make_response(invite, 486, to_tag="bobtag")), BOB)
    att.turn()
    run_for(att, 1.2)
    (task,) = [t for t in att.pbx.tasks.values() if t.program == "attendant"]
    assert task.status == "menu"
    assert task.is_connected()


def test_no_choice_reaches_the_timeout_entry(att):
    caller_connected(att)
    run_for(att, 3 * 5.5)
    (invite,) = invites_at(att, CAROL)
    assert str(invite.uri).startswith("sip:carol@")


def test_no_choice_without_a_timeout_entry_hangs_up(att):
    caller_connected(att, "sip:plain@example.com")
    run_for(att, 3 * 5.5)
    assert "BYE" in [r.method for r in att.requests_to()]


def test_the_callers_cancel_while_the_bridged_call_rings_cancels_the_outgoing_leg():
    async def b2bua(task):
        helper = task.start_task("bridgedcall", ("bob",))
        try:
            await task.start_bridge(helper)
        except Exception:
            return

    from .test_task import Program

    harness = PBXHarness(applications={"b2bua": Program("b2bua", b2bua), "bridgedcall": BridgedCall()})
    try:
        harness.register("bob", BOB)
        harness.route("S:<gw> = b2bua#postmaster")
        harness.invite("sip:gw@example.com")
        (invite,) = invites_at(harness, BOB)
        harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
        harness.turn()
        assert 180 in [r.status for r in harness.responses()]
        harness.cancel()
        assert harness.final().status == 487
        harness.turn()
        cancels = [m for m in harness.take(BOB) if isinstance(m, Request) and m.method == "CANCEL"]
        assert cancels and cancels[0].call_id == invite.call_id
        harness.port.receive(bytes(make_response(invite, 487, to_tag="bobtag")), BOB)
        harness.turn()
        assert harness.pbx.tasks == {}
    finally:
        harness.pbx.stopService()
        harness.stop()
