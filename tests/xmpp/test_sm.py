"""
XEP-0198 stream management over scripted streams: enabling, counting and
acknowledgements (bad h values end the stream), hibernation after a lost
connection, resumption with the unacknowledged stanzas sent again, and
what happens to unacknowledged messages when a session ends for good.
"""

import pytest

from communigate.xmpp.sm import ACK_DELAY, MAX_UNACKED, NS_SM

ENABLE = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"


def sm_elements(elements, name=None):
    return [e for e in elements if e.uri == NS_SM and (name is None or e.name == name)]


def messages(elements):
    return [e for e in elements if e.name == "message"]


def chat(to, body):
    return f"<message type='chat' to='{to}'><body>{body}</body></message>"


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


@pytest.fixture
def managed(alice):
    alice.send(ENABLE)
    (enabled,) = alice.elements()
    assert enabled.name == "enabled" and enabled["resume"] == "true"
    alice.sm_id = enabled["id"]
    return alice


@pytest.fixture
def bob(connect):
    client = connect(port=40001).bound("desk", "bob", "builder")
    client.available()
    return client


def test_enable_gives_an_id_and_the_resume_time(alice):
    alice.send(ENABLE)
    (enabled,) = alice.elements()
    assert (enabled.uri, enabled["resume"], enabled["max"]) == (NS_SM, "true", "300")
    assert len(enabled["id"]) >= 16


def test_enable_without_resume_is_not_resumable(alice):
    alice.send("<enable xmlns='urn:xmpp:sm:3'/>")
    (enabled,) = alice.elements()
    assert enabled.getAttribute("id") is None and enabled.getAttribute("resume") is None


def test_enable_with_resumption_turned_off_is_not_resumable(alice, service):
    service.apply_settings({"ResumeTimeout": "0"})
    alice.send(ENABLE)
    (enabled,) = alice.elements()
    assert enabled.getAttribute("id") is None


def test_enable_before_binding_or_twice_fails(connect, managed):
    early = connect(port=40009)
    early.login()
    early.send(ENABLE)
    (failed,) = early.elements()
    assert failed.name == "failed" and failed.firstChildElement().name == "unexpected-request"
    managed.send(ENABLE)
    (failed,) = managed.elements()
    assert failed.name == "failed"


def test_r_and_a_without_sm_fail_politely(alice):
    alice.send("<r xmlns='urn:xmpp:sm:3'/>")
    alice.send("<a xmlns='urn:xmpp:sm:3' h='0'/>")
    assert [e.name for e in alice.elements()] == ["failed", "failed"]
    assert alice.stream.state.value == "established"


def test_r_is_answered_with_the_number_of_stanzas_handled(managed):
    managed.send("<iq type='get' id='p1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
    managed.send("<presence/>")
    managed.elements()
    managed.send("<r xmlns='urn:xmpp:sm:3'/>")
    (answer,) = sm_elements(managed.elements())
    assert answer.name == "a" and answer["h"] == "2"


def test_the_server_asks_for_acks_and_forgets_what_is_acknowledged(managed, bob, service, clock):
    bob.send(chat("alice@example.com/phone", "one"))
    assert sm_elements(managed.elements()) == []
    clock.advance(ACK_DELAY)
    (request,) = sm_elements(managed.elements())
    assert request.name == "r"
    assert len(managed.stream.management.queue) == 1
    managed.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    assert len(managed.stream.management.queue) == 0
    for index in range(5):
        bob.send(chat("alice@example.com/phone", f"m{index}"))
    assert [e.name for e in sm_elements(managed.elements())] == ["r"]


@pytest.mark.parametrize("h", ["2", "4294967295"])
def test_an_ack_of_stanzas_never_sent_ends_the_stream(managed, bob, h):
    bob.send(chat("alice@example.com/phone", "one"))
    managed.elements()
    managed.send(f"<a xmlns='urn:xmpp:sm:3' h='{h}'/>")
    errors = [e for e in managed.elements() if e.name == "error"]
    (error,) = errors
    names = {child.name for child in error.elements()}
    assert "undefined-condition" in names and "handled-count-too-high" in names
    assert managed.transport.disconnecting


@pytest.mark.parametrize("h", ["-1", "x", "4294967296", ""])
def test_an_h_that_is_no_counter_ends_the_stream(managed, h):
    managed.send(f"<a xmlns='urn:xmpp:sm:3' h='{h}'/>")
    assert managed.closed_with() == "undefined-condition"


def test_too_many_unacknowledged_stanzas_end_the_stream(managed, bob, clock):
    for index in range(MAX_UNACKED + 1):
        bob.send(chat("alice@example.com/phone", f"m{index}"))
    clock.advance(0)
    assert managed.closed_with() == "policy-violation"


def test_a_lost_connection_hibernates_and_the_session_is_resumed(managed, bob, connect, service, clock):
    managed.available()
    bob.send(chat("alice@example.com/phone", "before"))
    managed.elements()
    assert managed.stream.details["StreamManagement"] == "resumable"
    managed.lose_connection()
    assert service.sessions.lookup("alice@example.com/phone") is managed.stream
    assert managed.stream.details["StreamManagement"] == "waiting"
    assert service.stream_management.sessions_waiting() == 1
    bob.send(chat("alice@example.com", "while away"))
    clock.advance(60)
    again = connect(port=40002)
    again.login()
    again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{managed.sm_id}' h='0'/>")
    got = again.elements()
    assert got[0].name == "resumed" and got[0]["previd"] == managed.sm_id and got[0]["h"] == "1"
    assert [str(m.body) for m in messages(got)] == ["before", "while away"]
    assert service.sessions.lookup("alice@example.com/phone") is again.stream
    assert again.stream.state.value == "established"
    # The session goes on: a ping works and acks continue from the resent ones.
    again.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
    assert len(again.stream.management.queue) == 0


def test_resumption_keeps_presence_and_nobody_sees_it_leave(managed, bob, connect, context, clock):
    context.roster.set_subscription("alice@example.com", "bob@example.com", "both")
    managed.send("<presence><show>away</show></presence>")
    bob.elements()
    managed.lose_connection()
    assert bob.elements() == []
    again = connect(port=40002)
    again.login()
    again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{managed.sm_id}' h='0'/>")
    assert bob.elements() == []
    assert again.stream.available
    assert context.presence.status("alice@example.com") == ("away", None)


def test_resuming_a_session_still_connected_closes_the_old_connection(managed, connect):
    again = connect(port=40002)
    again.login()
    again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{managed.sm_id}' h='0'/>")
    assert again.elements()[0].name == "resumed"
    assert managed.closed_with() == "conflict"
    assert again.stream.state.value == "established"


@pytest.mark.parametrize("previd", ["unknown", ""])
def test_an_unknown_id_cannot_be_resumed(managed, connect, previd):
    again = connect(port=40002)
    again.login()
    again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    (failed,) = again.elements()
    assert failed.name == "failed" and failed.firstChildElement().name == "item-not-found"
    (result,) = again.bind("fresh")
    assert result["type"] == "result"


def test_another_accounts_session_cannot_be_resumed(managed, connect):
    mallory = connect(port=40002)
    mallory.login("bob", "builder")
    mallory.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{managed.sm_id}' h='0'/>")
    (failed,) = mallory.elements()
    assert failed.firstChildElement().name == "item-not-found"
    assert managed.stream.state.value == "established"


def test_a_resume_with_an_h_too_high_fails(managed, connect):
    managed.lose_connection()
    again = connect(port=40002)
    again.login()
    again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{managed.sm_id}' h='7'/>")
    (failed,) = again.elements()
    assert failed.name == "failed"
    assert {c.name for c in failed.elements()} == {"undefined-condition", "handled-count-too-high"}


def test_after_the_timeout_the_session_ends_and_unacked_messages_are_kept(managed, bob, service, context, clock):
    context.roster.set_subscription("alice@example.com", "bob@example.com", "both")
    managed.available()
    bob.elements()
    bob.send(chat("alice@example.com/phone", "unacked"))
    managed.lose_connection()
    bob.send(chat("alice@example.com/phone", "queued"))
    clock.advance(299)
    assert service.sessions.lookup("alice@example.com/phone") is not None
    clock.advance(1)
    assert service.sessions.lookup("alice@example.com/phone") is None
    assert [e["type"] for e in bob.elements() if e.name == "presence"] == ["unavailable"]
    kept = service.offline.take("alice@example.com", "example.com")
    assert [str(m.body) for m in kept] == ["unacked", "queued"]


def test_a_clean_close_ends_at_once_and_keeps_unacked_messages(managed, bob, service):
    bob.send(chat("alice@example.com/phone", "unread"))
    managed.send("</stream:stream>")
    managed.lose_connection()
    assert service.sessions.lookup("alice@example.com/phone") is None
    assert service.offline.count("alice@example.com") == 1


def test_an_administrator_ends_a_hibernating_session(managed, service, context):
    from communigate.cli.context import CommandContext

    managed.lose_connection()
    result = context.interpreter.run(
        CommandContext.for_account("postmaster@example.com"), 'KILLXMPPSESSION "alice@example.com/phone"'
    )
    assert result.ok, result.error
    assert service.sessions.lookup("alice@example.com/phone") is None


def test_a_new_login_with_the_same_resource_replaces_a_hibernating_session(managed, connect, service):
    managed.lose_connection()
    fresh = connect(port=40002).bound("phone")
    assert service.sessions.lookup("alice@example.com/phone") is fresh.stream
    assert service.stream_management.sessions_waiting() == 0


def test_acknowledged_messages_are_not_kept(managed, bob, service):
    bob.send(chat("alice@example.com/phone", "read"))
    managed.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    managed.send("</stream:stream>")
    managed.lose_connection()
    assert service.offline.count("alice@example.com") == 0


def test_shutdown_keeps_the_unacked_messages_of_every_managed_session(managed, bob, connect, service):
    other = connect(port=40005).bound("laptop")
    other.send(ENABLE)
    other.elements()
    bob.send(chat("alice@example.com/phone", "one"))
    bob.send(chat("alice@example.com/laptop", "two"))
    managed.lose_connection()
    service.stopService()
    assert len(service.sessions) == 0
    assert sorted(str(m.body) for m in service.offline.take("alice@example.com", "example.com")) == ["one", "two"]
