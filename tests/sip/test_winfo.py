"""
The presence.winfo package (RFC 3857, RFC 3858 bodies) in the real SIP
service on a clock: the owner subscribes and learns of its SIP and XMPP
watchers, full state first, partial changes after, as others subscribe,
are approved or refused, and their subscriptions end.
"""

from communigate.formats import watcherinfo
from communigate.presence.subscription import Kind
from communigate.sip.message import Request, Response

ALICE_URI = "sip:alice@example.com"
ALICE = ("127.0.0.1", 5090)
BOB = ("127.0.0.1", 5070)
WINFO = "presence.winfo"


def subscribe(sip, user="bob", event="presence", expires=600, source=BOB, **kwargs):
    headers = [("Event", event), ("Contact", f"<sip:{user}@{source[0]}:{source[1]}>"), ("Expires", str(expires))]
    headers += list(kwargs.pop("headers", ()))
    return sip.authorized("SUBSCRIBE", ALICE_URI, user=user, source=source, headers=headers, **kwargs)


def watch_watchers(sip, expires=600, **kwargs):
    """alice subscribes to her watchers; her first NOTIFY, answered."""
    response, cseq, requests = subscribe(sip, user="alice", event=WINFO, expires=expires, source=ALICE,
                                         call_id="winfo@alice", **kwargs)
    assert response.status == 200, response
    (first,) = requests
    sip.answer(first, source=ALICE)
    return response, cseq, first


def notifies(sip, source=ALICE):
    return [m for m in sip.take(source) if isinstance(m, Request) and m.method == "NOTIFY"]


def document(notify):
    assert notify.headers.get("Event") == WINFO
    assert notify.headers.get("Content-Type") == watcherinfo.CONTENT_TYPE
    info = watcherinfo.parse(notify.body)
    (watcher_list,) = info.lists
    assert (watcher_list.resource, watcher_list.package) == (ALICE_URI, "presence")
    return info


def listed(notify):
    """C{{uri: (status, event)}} of a NOTIFY's watchers."""
    return {w.uri: (w.status, w.event) for w in document(notify).lists[0].watchers}


def next_notify(sip):
    sip.reactor.advance(0)
    (notify,) = notifies(sip)
    sip.answer(notify, source=ALICE)
    return notify


def test_the_owner_gets_the_full_state_with_a_pending_sip_watcher(sip):
    _, _, (pending,) = subscribe(sip)
    sip.answer(pending, source=BOB)
    response, _, first = watch_watchers(sip)
    assert response.headers.get("Allow-Events") == "presence, message-summary, dialog, presence.winfo"
    assert first.headers.get("Subscription-State") == "active;expires=600"
    info = document(first)
    assert (info.version, info.state) == (0, "full")
    assert listed(first) == {
        "sip:bob@example.com": ("pending", "subscribe"),
        "xmpp:bob@example.com": ("pending", "subscribe"),
    }


def test_a_new_subscriber_approved_over_the_cli_arrives_as_partial_changes(sip):
    _, _, first = watch_watchers(sip)
    assert listed(first) == {}
    _, _, (pending,) = subscribe(sip)
    sip.answer(pending, source=BOB)
    asked = next_notify(sip)
    assert (document(asked).version, document(asked).state) == (1, "partial")
    assert listed(asked) == {
        "sip:bob@example.com": ("pending", "subscribe"),
        "xmpp:bob@example.com": ("pending", "subscribe"),
    }

    sip.cli("ROSTER alice {what = Presence; peer = bob@example.com; type = subscribed;}")
    approved = next_notify(sip)
    assert (document(approved).version, document(approved).state) == (2, "partial")
    assert listed(approved) == {
        "sip:bob@example.com": ("active", "approved"),
        "xmpp:bob@example.com": ("active", "approved"),
    }
    ids = {w.uri: w.id for w in document(asked).lists[0].watchers}
    assert ids == {w.uri: w.id for w in document(approved).lists[0].watchers}


def test_a_refusal_terminates_the_watchers_as_rejected(sip):
    watch_watchers(sip)
    _, _, (pending,) = subscribe(sip)
    sip.answer(pending, source=BOB)
    next_notify(sip)
    sip.cli("ROSTER alice {what = Presence; peer = bob@example.com; type = unsubscribed;}")
    refused = next_notify(sip)
    assert listed(refused) == {
        "sip:bob@example.com": ("terminated", "rejected"),
        "xmpp:bob@example.com": ("terminated", "rejected"),
    }


def test_only_the_owner_may_subscribe_and_the_body_type_must_be_accepted(sip):
    impostor, _, requests = subscribe(sip, user="bob", event=WINFO)
    assert impostor.status == 403 and impostor.reason == "Only the account itself may watch its watchers"
    assert requests == []
    remote = sip.request("SUBSCRIBE", ALICE_URI, user="dave", domain="remote.example",
                         headers=[("Event", WINFO), ("Contact", "<sip:dave@127.0.0.1:5070>")])
    sip.port.receive(remote, BOB)
    assert [m.status for m in sip.take(BOB)] == [403]
    picky, _, _ = subscribe(sip, user="alice", event=WINFO, source=ALICE, call_id="p@alice",
                            headers=[("Accept", "application/pidf+xml")])
    assert picky.status == 406 and picky.headers.get("Accept") == watcherinfo.CONTENT_TYPE
    willing, _, (notify,) = subscribe(sip, user="alice", event=WINFO, source=ALICE, call_id="w@alice",
                                      headers=[("Accept", watcherinfo.CONTENT_TYPE)])
    assert willing.status == 200 and document(notify).state == "full"


def test_expired_and_unsubscribed_watchers_are_terminated(sip):
    sip.cli("ROSTER alice {what = Update; peer = carol@example.com; subscription = from;}")
    watch_watchers(sip, expires=3600)
    _, _, (pending,) = subscribe(sip, expires=60)
    sip.answer(pending, source=BOB)
    next_notify(sip)
    carol = ("127.0.0.1", 5072)
    response, cseq, (active,) = subscribe(sip, user="carol", source=carol, call_id="c@carol")
    sip.answer(active, source=carol)
    assert listed(next_notify(sip)) == {"sip:carol@example.com": ("active", "subscribe")}

    sip.reactor.advance(61)
    sip.take(BOB)
    assert listed(next_notify(sip)) == {"sip:bob@example.com": ("terminated", "giveup")}

    bye = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag=response.to().tag, user="carol",
                      call_id="c@carol", cseq=cseq + 1, source=carol, headers=[("Event", "presence"), ("Expires", "0")])
    sip.port.receive(bye, carol)
    assert [m.status for m in sip.take(carol) if isinstance(m, Response)] == [200]
    assert listed(next_notify(sip)) == {"sip:carol@example.com": ("terminated", "timeout")}


def test_xmpp_requests_approvals_and_removals_are_watchers_too(sip):
    roster = sip.core.roster
    roster.exchange("carol@example.com", "alice@example.com", Kind.SUBSCRIBE)
    _, _, first = watch_watchers(sip)
    assert listed(first) == {"xmpp:carol@example.com": ("pending", "subscribe")}
    roster.exchange("alice@example.com", "carol@example.com", Kind.SUBSCRIBED)
    assert listed(next_notify(sip)) == {"xmpp:carol@example.com": ("active", "approved")}
    roster.exchange("carol@example.com", "alice@example.com", Kind.UNSUBSCRIBE)
    assert listed(next_notify(sip)) == {"xmpp:carol@example.com": ("terminated", "timeout")}
    roster.exchange("dave@example.com", "alice@example.com", Kind.SUBSCRIBE)
    roster.exchange("dave@example.com", "alice@example.com", Kind.UNSUBSCRIBE)
    assert listed(next_notify(sip)) == {"xmpp:dave@example.com": ("terminated", "giveup")}
    sip.cli("ROSTER alice {what = Update; peer = erin@example.com; name = Erin; subscription = both;}")
    (erin,) = document(next_notify(sip)).lists[0].watchers
    assert (erin.uri, erin.status, erin.event, erin.display_name) == (
        "xmpp:erin@example.com", "active", "approved", "Erin"
    )
    sip.cli("ROSTER alice {what = remove; peer = erin@example.com;}")
    assert listed(next_notify(sip)) == {"xmpp:erin@example.com": ("terminated", "rejected")}


def test_changes_behind_a_notify_in_flight_become_one_full_document(sip):
    watch_watchers(sip)
    sip.core.roster.exchange("carol@example.com", "alice@example.com", Kind.SUBSCRIBE)
    sip.reactor.advance(0)
    (in_flight,) = notifies(sip)
    sip.core.roster.exchange("dave@example.com", "alice@example.com", Kind.SUBSCRIBE)
    sip.reactor.advance(0)
    sip.core.roster.exchange("erin@example.com", "alice@example.com", Kind.SUBSCRIBE)
    sip.reactor.advance(0)
    assert notifies(sip) == []
    sip.answer(in_flight, source=ALICE)
    (latest,) = notifies(sip)
    info = document(latest)
    assert info.state == "full" and info.version > document(in_flight).version + 1
    assert set(listed(latest)) == {"xmpp:carol@example.com", "xmpp:dave@example.com", "xmpp:erin@example.com"}


def test_a_refresh_gets_the_full_state_again_and_expiry_ends_with_it(sip):
    sip.cli("ROSTER alice {what = Update; peer = carol@example.com; subscription = from;}")
    response, cseq, first = watch_watchers(sip, expires=60)
    refresh = sip.request("SUBSCRIBE", "sip:127.0.0.1:5060", to=ALICE_URI, to_tag=response.to().tag, user="alice",
                          call_id="winfo@alice", cseq=cseq + 1, source=ALICE,
                          headers=[("Event", WINFO), ("Expires", "60")])
    sip.port.receive(refresh, ALICE)
    messages = sip.take(ALICE)
    assert [m.status for m in messages if isinstance(m, Response)] == [200]
    (again,) = [m for m in messages if isinstance(m, Request)]
    assert (document(again).state, document(again).version) == ("full", 1)
    assert listed(again) == {"xmpp:carol@example.com": ("active", "approved")}
    sip.answer(again, source=ALICE)
    sip.reactor.advance(61)
    (final,) = notifies(sip)
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert (document(final).state, document(final).version) == ("full", 2)
    assert sip.service.presence.watchers.counts()["accounts_followed"] == 0


def test_a_fetch_gets_the_full_state_once(sip):
    sip.core.roster.exchange("carol@example.com", "alice@example.com", Kind.SUBSCRIBE)
    response, _, (notify,) = subscribe(sip, user="alice", event=WINFO, expires=0, source=ALICE, call_id="f@alice")
    assert response.status == 200
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert document(notify).state == "full"
    assert listed(notify) == {"xmpp:carol@example.com": ("pending", "subscribe")}
    assert len(sip.service.presence.notifier) == 0


def test_a_failed_notify_ends_a_watcher_and_other_packages_are_no_watchers(sip):
    watch_watchers(sip)
    subscribe(sip, event="message-summary", user="alice", source=("127.0.0.1", 5091), call_id="mwi@alice")
    sip.reactor.advance(0)
    assert notifies(sip) == []
    sip.cli("ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    assert listed(next_notify(sip)) == {"xmpp:bob@example.com": ("active", "approved")}
    _, _, (first,) = subscribe(sip)
    assert listed(next_notify(sip)) == {"sip:bob@example.com": ("active", "subscribe")}
    sip.answer(first, 481, source=BOB)
    assert listed(next_notify(sip)) == {"sip:bob@example.com": ("terminated", "timeout")}


def test_the_owners_own_failed_notify_ends_the_following(sip):
    response, _, requests = subscribe(sip, user="alice", event=WINFO, source=ALICE, call_id="winfo@alice")
    (first,) = requests
    sip.answer(first, 481, source=ALICE)
    assert sip.service.presence.watchers.counts()["accounts_followed"] == 0
    subscribe(sip)
    sip.reactor.advance(0)
    assert notifies(sip) == []


def test_a_restarted_service_follows_the_roster_again(sip):
    sip.service.stopService()
    sip.service.startService()
    sip.port = sip.reactor.udp_ports[-1]
    watch_watchers(sip)
    sip.core.roster.exchange("carol@example.com", "alice@example.com", Kind.SUBSCRIBE)
    assert listed(next_notify(sip)) == {"xmpp:carol@example.com": ("pending", "subscribe")}


def test_a_full_document_too_long_for_udp_ends_the_subscription(sip):
    sip.cli("UPDATEACCOUNTSETTINGS alice {MaxRosterItems = unlimited;}")
    for n in range(800):
        sip.core.roster.set_subscription("alice@example.com", f"contact{n:04}@remote.example", "from")
    response, _, requests = subscribe(sip, user="alice", event=WINFO, source=ALICE, call_id="big@alice")
    assert response.status == 200 and requests == []
    assert len(sip.service.presence.notifier) == 0
    assert sip.service.presence.watchers.counts()["accounts_followed"] == 0
