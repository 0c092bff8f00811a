"""
SIP presence end to end in the real service on a clock: SUBSCRIBE with
digest, NOTIFYs as the presence changes, PUBLISH with entity tags,
authorization through the roster, refresh, unsubscribe, expiry, NOTIFY
failures, limits, and bad input.
"""

from communigate.formats import pidf
from communigate.presence.state import PresenceState
from communigate.sip.message import Request, Response

ALICE_URI = "sip:alice@example.com"
BOB = ("127.0.0.1", 5070)
PHONE = ("127.0.0.1", 5080)


def state_of(notify):
    return pidf.state_of(pidf.parse(notify.body))


def subscribe(sip, user="bob", target=ALICE_URI, event="presence", expires=600, source=BOB, **kwargs):
    headers = [("Event", event), ("Contact", f"<sip:{user}@{source[0]}:{source[1]}>"), ("Expires", str(expires))]
    headers += list(kwargs.pop("headers", ()))
    return sip.authorized("SUBSCRIBE", target, user=user, source=source, headers=headers, **kwargs)


def publish(sip, body=None, tag=None, expires=600, user="alice", event="presence", content_type=pidf.CONTENT_TYPE,
            cseq=1):
    headers = [("Event", event), ("Expires", str(expires))]
    if tag:
        headers.append(("SIP-If-Match", tag))
    return sip.authorized(
        "PUBLISH", ALICE_URI, user=user, source=PHONE, headers=headers, body=body or b"",
        content_type=content_type if body else None, call_id="pub@phone", cseq=cseq,
    )


def busy_body(note="On the phone"):
    return pidf.serialize(pidf.document_for(ALICE_URI, PresenceState(show="dnd", status=note,
                                                                      activity="on-the-phone")))


def notifies(sip, source=BOB):
    return [m for m in sip.take(source) if isinstance(m, Request) and m.method == "NOTIFY"]


def test_an_authorised_watcher_gets_200_and_a_notify_with_the_state(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    response, _, requests = subscribe(sip)
    assert response.status == 200 and response.headers.get("Expires") == "600"
    assert response.to().tag.startswith("ps")
    (notify,) = requests
    assert notify.headers.get("Event") == "presence"
    assert notify.headers.get("Subscription-State") == "active;expires=600"
    assert notify.headers.get("Content-Type") == pidf.CONTENT_TYPE
    assert notify.from_().tag == response.to().tag and notify.to().tag == "ft1"
    assert str(notify.uri) == "sip:bob@127.0.0.1:5070"
    assert state_of(notify).available is False


def test_a_published_busy_reaches_the_watcher_and_the_etag_rules_hold(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    _, _, (first,) = subscribe(sip)
    sip.answer(first)
    response, cseq, _ = publish(sip, busy_body())
    assert response.status == 200 and response.headers.get("Expires") == "600"
    etag = response.headers.get("SIP-ETag")
    (notify,) = notifies(sip)
    assert state_of(notify) == PresenceState(show="dnd", status="On the phone", activity="on-the-phone")
    assert sip.cli("GETACCOUNTPRESENCE alice") == ["busy", "On the phone"]
    sip.answer(notify)

    refreshed, cseq, _ = publish(sip, tag=etag, cseq=cseq + 1)
    assert refreshed.status == 200 and refreshed.headers.get("SIP-ETag") != etag
    stale, cseq, _ = publish(sip, tag=etag, cseq=cseq + 1)
    assert stale.status == 412
    removed, _, _ = publish(sip, tag=refreshed.headers.get("SIP-ETag"), expires=0, cseq=cseq + 1)
    assert removed.status == 200 and removed.headers.get("Expires") == "0"
    (offline,) = notifies(sip)
    assert state_of(offline).available is False


def test_a_publication_expires_on_the_clock(sip):
    publish(sip, busy_body(), expires=60)
    assert sip.core.presence.state("alice@example.com").show == "dnd"
    sip.reactor.advance(61)
    assert sip.core.presence.status("alice@example.com") is None


def test_an_unauthorised_watcher_waits_until_the_roster_authorises_it(sip):
    _, _, (pending,) = subscribe(sip)
    assert pending.headers.get("Subscription-State") == "pending;expires=600" and pending.body == b""
    assert "bob@example.com" in sip.cli("ROSTER alice {what = List;}")
    sip.answer(pending)
    publish(sip, busy_body())
    assert notifies(sip) == []
    sip.cli("ROSTER alice {what = Presence; peer = bob@example.com; type = subscribed;}")
    (active,) = notifies(sip)
    assert active.headers.get("Subscription-State").startswith("active;")
    assert state_of(active).show == "dnd"


def test_a_refusal_terminates_the_waiting_subscription(sip):
    _, _, (pending,) = subscribe(sip)
    sip.answer(pending)
    sip.cli("ROSTER alice {what = Presence; peer = bob@example.com; type = unsubscribed;}")
    (final,) = notifies(sip)
    assert final.headers.get("Subscription-State") == "terminated;reason=rejected"
    assert len(sip.service.presence.notifier) == 0


def test_changes_while_a_notify_is_in_flight_are_coalesced(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    _, _, (first,) = subscribe(sip)
    presence = sip.core.presence
    for word in ("away", "dnd", "xa"):
        presence.publish("alice@example.com", ("xmpp", "alice@example.com/pc"), PresenceState(show=word))
    assert notifies(sip) == []
    sip.answer(first)
    (latest,) = notifies(sip)
    assert state_of(latest).show == "away" and latest.cseq().number == first.cseq().number + 1


def test_refresh_renotifies_and_unsubscribe_ends_with_terminated(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = both;}")
    response, cseq, (first,) = subscribe(sip)
    sip.answer(first)
    tag = response.to().tag
    refresh = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag=tag, user="bob", cseq=cseq + 1,
                          headers=[("Event", "presence"), ("Expires", "1200")])
    sip.port.receive(refresh, BOB)
    messages = sip.take(BOB)
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    (again,) = [m for m in messages if isinstance(m, Request)]
    assert again.headers.get("Subscription-State") == "active;expires=1200"
    sip.answer(again)
    old = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag=tag, user="bob", cseq=cseq,
                      headers=[("Event", "presence")])
    sip.port.receive(old, BOB)
    assert [m.status for m in sip.take(BOB)] == [500]
    bye = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag=tag, user="bob", cseq=cseq + 2,
                      headers=[("Event", "presence"), ("Expires", "0")])
    sip.port.receive(bye, BOB)
    messages = sip.take(BOB)
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    (final,) = [m for m in messages if isinstance(m, Request)]
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    sip.port.receive(bye.replace(b"z9hG4bK-t", b"z9hG4bK-u"), BOB)
    assert [m.status for m in sip.take(BOB)] == [481]


def test_an_expired_subscription_is_terminated_and_forgotten(sip):
    _, _, (first,) = subscribe(sip, expires=60)
    sip.answer(first)
    sip.reactor.advance(61)
    (final,) = notifies(sip)
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert len(sip.service.presence.notifier) == 0
    assert sip.core.presence.counts()["watchers"] == {"pending": 0, "active": 0}


def test_a_failed_notify_ends_the_subscription_silently(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    _, _, (first,) = subscribe(sip)
    sip.answer(first, 481)
    assert len(sip.service.presence.notifier) == 0
    _, _, (second,) = subscribe(sip, call_id="c2@127.0.0.1")
    sip.reactor.advance(40)  # Timer F: no answer at all
    notifies(sip)
    assert len(sip.service.presence.notifier) == 0
    assert sip.core.presence.counts()["watchers"]["active"] == 0


def test_a_fetch_gets_one_terminated_notify_with_the_state(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    response, _, (notify,) = subscribe(sip, expires=0)
    assert response.status == 200 and response.headers.get("Expires") == "0"
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert state_of(notify).available is False
    assert len(sip.service.presence.notifier) == 0 and sip.core.roster.pending("alice@example.com") == []


def test_a_watcher_from_another_domain_needs_no_login_and_waits(sip):
    request = sip.request("SUBSCRIBE", ALICE_URI, user="dave", domain="remote.example",
                          headers=[("Event", "presence"), ("Contact", "<sip:dave@127.0.0.1:5070>")])
    sip.port.receive(request, BOB)
    messages = sip.take(BOB)
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    assert [r.contact for r in sip.core.roster.pending("alice@example.com")] == ["dave@remote.example"]


def test_registered_phones_make_the_account_online(sip):
    assert sip.register("alice", PHONE, expires=120).status == 200
    assert sip.cli("GETACCOUNTPRESENCE alice") == "online"
    sip.reactor.advance(121)
    assert sip.core.presence.status("alice@example.com") is None


def test_a_phone_changing_its_contact_does_not_blink_offline(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    sip.register("alice", PHONE, expires=120)
    _, _, (first,) = subscribe(sip)
    sip.answer(first)
    sip.register("alice", PHONE, expires=120, contact="<sip:alice@127.0.0.1:5081>", remove="<sip:alice@127.0.0.1:5080>")
    sip.reactor.advance(0)
    assert notifies(sip) == [] and sip.cli("GETACCOUNTPRESENCE alice") == "online"


def test_message_summary_follows_the_counts_set_over_the_cli(sip):
    response, _, (first,) = subscribe(sip, user="alice", event="message-summary")
    assert response.status == 200
    assert first.headers.get("Content-Type") == "application/simple-message-summary"
    assert first.body.startswith(b"Messages-Waiting: no")
    sip.answer(first)
    sip.cli("SETACCOUNTMWI alice {new = 2; old = 8; urgentOld = 2;}")
    (notify,) = notifies(sip)
    assert b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\nVoice-Message: 2/8 (0/2)" in notify.body
    refused, _, _ = subscribe(sip, user="bob", event="message-summary", call_id="c2@x")
    assert (refused.status, refused.reason) == (403, "Only the account itself may watch its messages")


def test_dialog_subscriptions_need_dialog_info_and_the_roster(sip):
    refused, _, _ = subscribe(sip, event="dialog")
    assert (refused.status, refused.reason) == (403, "Dialog information is not enabled for this account")
    sip.cli("UPDATEACCOUNTSETTINGS alice {DialogInfo = YES;}")
    refused, _, _ = subscribe(sip, event="dialog", call_id="c2@x")
    assert (refused.status, refused.reason) == (403, "Not authorized by the account's roster")
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    response, _, (notify,) = subscribe(sip, event="dialog", call_id="c3@x")
    assert response.status == 200 and notify.headers.get("Content-Type") == "application/dialog-info+xml"
    assert b'version="0" state="full" entity="sip:alice@example.com"' in notify.body


def test_unknown_events_bad_bodies_and_bad_headers_are_refused(sip):
    unknown, _, _ = subscribe(sip, event="conference")
    assert unknown.status == 489 and unknown.headers.get("Allow-Events") == (
        "presence, message-summary, dialog, presence.winfo"
    )
    request = sip.request("SUBSCRIBE", ALICE_URI, user="dave", domain="remote.example",
                          headers=[("Contact", "<sip:dave@127.0.0.1:5070>")])
    sip.port.receive(request, BOB)
    assert [(m.status, m.reason) for m in sip.take(BOB)] == [(400, "Missing Event header")]
    brief, _, _ = subscribe(sip, expires=10, call_id="c3@x")
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "60"
    picky, _, _ = subscribe(sip, call_id="c4@x", headers=[("Accept", "text/plain")])
    assert picky.status == 406
    nobody, _, _ = subscribe(sip, target="sip:nobody@example.com", call_id="c5@x")
    assert nobody.status == 404

    wrong_event, _, _ = publish(sip, busy_body(), event="dialog")
    assert wrong_event.status == 489 and wrong_event.headers.get("Allow-Events") == "presence"
    malformed, _, _ = publish(sip, b"<presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple")
    assert malformed.status == 400 and malformed.reason.startswith("Bad PIDF: malformed XML")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
              b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&b;"/>')
    entities, _, _ = publish(sip, laughs)
    assert entities.status == 400 and "DTD or entity" in entities.reason
    plain, _, _ = publish(sip, b"busy", content_type="text/plain")
    assert plain.status == 415 and plain.headers.get("Accept") == pidf.CONTENT_TYPE
    empty, _, _ = publish(sip)
    assert (empty.status, empty.reason) == (400, "An initial PUBLISH needs a PIDF body")
    unknown_tag, _, _ = publish(sip, tag="feedface")
    assert unknown_tag.status == 412
    impostor, _, _ = publish(sip, busy_body(), user="bob")
    assert impostor.status == 403


def test_a_wrong_password_is_refused_and_a_missing_one_challenged(sip):
    response, _, _ = subscribe(sip, password="wrong")
    assert response.status == 403
    sip.port.receive(sip.request("SUBSCRIBE", ALICE_URI, user="bob",
                                 headers=[("Event", "presence"), ("Contact", "<sip:bob@127.0.0.1:5070>")]), BOB)
    (challenge,) = sip.take(BOB)
    assert challenge.status == 407 and "Proxy-Authenticate" in challenge.headers


def test_subscriptions_to_one_account_are_bounded(sip):
    sip.service.presence.notifier.max_per_account = 2
    for n in range(2):
        assert subscribe(sip, call_id=f"c{n}@x")[0].status == 200
    over, _, _ = subscribe(sip, call_id="c9@x")
    assert (over.status, over.reason) == (403, "Too many subscriptions to this account")
    sip.service.presence.notifier.max_subscriptions = 2
    everywhere, _, _ = subscribe(sip, target="sip:carol@example.com", call_id="c10@x")
    assert everywhere.status == 503 and everywhere.headers.get("Retry-After") == "60"


def test_requests_that_are_not_ours_go_to_the_proxy(sip):
    stranger = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag="abc", user="bob",
                           headers=[("Event", "presence")])
    sip.port.receive(stranger, BOB)
    # Not a dialog of ours: the proxy has it, and asks the local caller to log in.
    assert [m.status for m in sip.take(BOB) if isinstance(m, Response)] == [407]
    # A tag that looks like ours, in a dialog between two phones, is not ours either.
    between_phones = sip.request("SUBSCRIBE", "sip:carol@127.0.0.1:5999", to="sip:carol@example.com",
                                 to_tag="ps0123", user="bob", headers=[("Event", "presence")])
    sip.port.receive(between_phones, BOB)
    assert [m.status for m in sip.take(BOB) if isinstance(m, Response)] == [407]
    ours = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag="ps0123", user="bob",
                       headers=[("Event", "presence")])
    sip.port.receive(ours, BOB)
    assert [m.status for m in sip.take(BOB) if isinstance(m, Response)] == [481]


def test_stopping_forgets_every_subscription_and_publication(sip):
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    subscribe(sip)
    publish(sip, busy_body())
    sip.stop()
    assert len(sip.service.presence.notifier) == 0 and len(sip.service.presence.publications) == 0
    assert sip.core.presence.counts()["watchers"] == {"pending": 0, "active": 0}


def remote_subscribe(sip, source, *, via_host=None, contact, extra=()):
    host, port = source
    text = (
        f"SUBSCRIBE {ALICE_URI} SIP/2.0\r\nVia: SIP/2.0/UDP {via_host or host}:{port};branch={sip.branch()};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:dave@remote.example>;tag=dt\r\nTo: <{ALICE_URI}>\r\n"
        f"Call-ID: {sip.branch()}@remote\r\nCSeq: 1 SUBSCRIBE\r\nContact: {contact}\r\nEvent: presence\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in extra)
        + "Content-Length: 0\r\n\r\n"
    )
    sip.port.receive(text.encode(), source)


def test_notifies_follow_the_record_route_of_the_subscribe(sip):
    remote_subscribe(sip, ("127.0.0.1", 5099), contact="<sip:dave@192.0.2.7:5060>",
                     extra=[("Record-Route", "<sip:127.0.0.1:5099;lr>, <sip:192.0.2.1;lr>")])
    messages = sip.take(("127.0.0.1", 5099))
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    (notify,) = [m for m in messages if isinstance(m, Request)]
    assert str(notify.uri) == "sip:dave@192.0.2.7:5060"
    assert notify.headers.get_all("Route") == ["<sip:127.0.0.1:5099;lr>", "<sip:192.0.2.1;lr>"]


def test_notifies_reach_a_subscriber_behind_nat_over_its_flow(sip):
    remote_subscribe(sip, ("127.0.0.1", 6000), via_host="10.0.0.5", contact="<sip:dave@10.0.0.5:5060>")
    messages = sip.take(("127.0.0.1", 6000))
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    (notify,) = [m for m in messages if isinstance(m, Request)]
    assert str(notify.uri) == "sip:dave@10.0.0.5:5060"
    assert sip.take(("10.0.0.5", 5060)) == []
