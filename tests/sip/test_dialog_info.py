"""
The dialog event package: call states per account as the proxy sees them
(RFC 4235 trying, early, confirmed, terminated), bounded, and delivered as
dialog-info NOTIFYs for a real call through the proxy.
"""

from twisted.internet.task import Clock

from communigate.formats import dialoginfo
from communigate.sip.dialog_info import CallStates
from communigate.sip.message import Request, Response, make_response, parse_message

BOB = ("127.0.0.1", 5070)
PHONE = ("127.0.0.1", 5080)
CAROL = ("127.0.0.1", 5090)

INVITE = (
    "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-i1\r\n"
    "From: <sip:carol@example.com>;tag=ct\r\nTo: <sip:alice@example.com>\r\nCall-ID: call-1\r\n"
    "CSeq: 1 INVITE\r\nContact: <sip:carol@127.0.0.1:5090>\r\nContent-Length: 0\r\n\r\n"
)


def calls(enabled=("alice@example.com", "carol@example.com"), **limits):
    clock = Clock()
    states = CallStates(
        clock, enabled=lambda account: account in enabled,
        account_of=lambda address: address if address.endswith("@example.com") else None, **limits,
    )
    return clock, states


def test_a_call_moves_through_the_rfc_4235_states_for_both_parties():
    clock, states = calls()
    seen = {"alice@example.com": [], "carol@example.com": []}
    for account, log in seen.items():
        states.watch(account, log.append)
    invite = parse_message(INVITE.encode())
    states.call_started(invite, "carol@example.com")
    states.call_progress(invite, make_response(invite, 180, to_tag="at"))
    states.call_progress(invite, make_response(invite, 200, to_tag="at"))
    bye = parse_message(
        b"BYE sip:alice@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-b\r\n"
        b"From: <sip:carol@example.com>;tag=ct\r\nTo: <sip:alice@example.com>;tag=at\r\nCall-ID: call-1\r\n"
        b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    states.in_dialog(bye)
    alice = [(d[0].state, d[0].direction, d[0].local_tag, d[0].remote_tag, d[0].event) for d in seen["alice@example.com"][1:]]
    assert alice == [
        ("trying", "recipient", None, "ct", None),
        ("early", "recipient", "at", "ct", None),
        ("confirmed", "recipient", "at", "ct", None),
        ("terminated", "recipient", "at", "ct", "remote-bye"),
    ]
    carol = seen["carol@example.com"][-1][0]
    assert (carol.direction, carol.local_tag, carol.remote_tag, carol.event) == ("initiator", "ct", "at", "local-bye")
    assert carol.remote_identity == "sip:alice@example.com" and carol.local_identity == "sip:carol@example.com"
    assert states.dialogs("alice@example.com") == () and states.count() == 0


def test_a_rejected_or_cancelled_call_terminates_with_its_event():
    clock, states = calls()
    invite = parse_message(INVITE.encode())
    seen = []
    states.watch("alice@example.com", seen.append)
    states.call_started(invite, None)
    states.call_progress(invite, make_response(invite, 487))
    assert (seen[-1][0].state, seen[-1][0].event, seen[-1][0].code) == ("terminated", "cancelled", 487)
    states.call_started(invite, None)
    states.call_progress(invite, make_response(invite, 486))
    assert seen[-1][0].event == "rejected"


def test_accounts_without_dialog_info_are_not_tracked_and_tracking_is_bounded():
    clock, states = calls(enabled=(), max_per_account=2)
    states.call_started(parse_message(INVITE.encode()), "carol@example.com")
    assert states.count() == 0
    clock, states = calls(max_per_account=2, setup_timeout=100)
    for n in range(3):
        states.call_started(parse_message(INVITE.replace("call-1", f"call-{n}").encode()), None)
    assert [d.call_id for d in states.dialogs("alice@example.com")] == ["call-1", "call-2"]
    clock.advance(101)
    states.purge()
    assert states.count() == 0


def test_a_call_through_the_proxy_reaches_the_dialog_subscriber(sip):
    sip.cli("UPDATEACCOUNTSETTINGS alice {DialogInfo = YES;}")
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    assert sip.register("alice", PHONE).status == 200
    response, _, (first,) = sip.authorized(
        "SUBSCRIBE", "sip:alice@example.com", user="bob", source=BOB,
        headers=[("Event", "dialog"), ("Contact", "<sip:bob@127.0.0.1:5070>")],
    )
    assert dialoginfo.parse(first.body).dialogs == ()
    sip.answer(first, source=BOB)

    trying, _, _ = sip.authorized(
        "INVITE", "sip:alice@example.com", user="carol", source=CAROL, call_id="call-9",
        headers=[("Contact", "<sip:carol@127.0.0.1:5090>")],
    )
    assert trying.status == 100
    (invite,) = [m for m in sip.take(PHONE) if isinstance(m, Request)]

    def states():
        found = []
        for notify in [m for m in sip.take(BOB) if isinstance(m, Request)]:
            sip.answer(notify, source=BOB)
            found += [d.state for d in dialoginfo.parse(notify.body).dialogs]
        return found

    assert states() == ["trying"]
    sip.port.receive(bytes(make_response(invite, 180, to_tag="phone")), PHONE)
    assert states() == ["early"]
    sip.port.receive(bytes(make_response(invite, 200, to_tag="phone", headers=[
        ("Contact", "<sip:alice@127.0.0.1:5080>"), ("Record-Route", invite.headers.get("Record-Route"))])), PHONE)
    assert states() == ["confirmed"]
    (ok,) = [m for m in sip.take(CAROL) if isinstance(m, Response) and m.status == 200]
    route = ok.headers.get("Record-Route")
    bye = (
        f"BYE sip:alice@127.0.0.1:5080 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-bye\r\n"
        f"Route: {route}\r\nMax-Forwards: 70\r\nFrom: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
        f"Call-ID: call-9\r\nCSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    sip.port.receive(bye.encode(), CAROL)
    assert states() == ["terminated"]
