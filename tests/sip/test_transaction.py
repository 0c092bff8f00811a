"""
The four RFC 3261 §17 transaction machines and the transaction layer,
driven by a Clock; messages are small stand-ins exposing only what the
transactions read (top Via branch and sent-by, CSeq method, status).
"""

import attrs
import pytest
from twisted.internet.task import Clock

from communigate.sip.message import make_response, parse_message, serialize
from communigate.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
    TransactionLayer,
)


@attrs.frozen
class Via:
    branch: str = "z9hG4bK-1"
    host: str = "client.example"
    port: int = 5060


@attrs.frozen
class CSeq:
    number: int = 1
    method: str = "INVITE"


@attrs.frozen
class Request:
    method: str = "INVITE"
    branch: str = "z9hG4bK-1"

    def top_via(self):
        return Via(self.branch)

    def cseq(self):
        return CSeq(1, "INVITE" if self.method == "ACK" else self.method)


@attrs.frozen
class Response:
    status: int
    method: str = "INVITE"
    branch: str = "z9hG4bK-1"

    def top_via(self):
        return Via(self.branch)

    def cseq(self):
        return CSeq(1, self.method)


class User:
    def __init__(self):
        self.events = []

    def response_received(self, transaction, response):
        self.events.append(("response", response.status))

    def timed_out(self, transaction):
        self.events.append(("timeout",))

    def transport_error(self, transaction):
        self.events.append(("transport error",))

    def request_received(self, request, flow, transaction):
        self.events.append(("request", request.method, transaction is not None))

    def stray_response(self, response, flow):
        self.events.append(("stray", response.status))


class Wire(list):
    def __call__(self, message):
        self.append(message)


def retransmission_times(clock, wire, until):
    times = []
    while clock.seconds() < until:
        before = len(wire)
        clock.advance(0.25)
        if len(wire) > before:
            times.append(clock.seconds())
    return times


def test_invite_client_retransmits_with_timer_a_doubling_and_times_out_with_timer_b():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteClientTransaction(Request(), wire, clock, user, build_ack=lambda r, s: "ACK")
    t.start()
    assert retransmission_times(clock, wire, 40) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert user.events == [("timeout",)]
    assert t.state is State.TERMINATED and clock.getDelayedCalls() == []


def test_invite_client_over_tcp_sends_once():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteClientTransaction(Request(), wire, clock, user, reliable=True, build_ack=lambda r, s: "ACK")
    t.start()
    clock.advance(31.9)
    assert len(wire) == 1 and user.events == []
    clock.advance(0.1)
    assert user.events == [("timeout",)]


def test_invite_client_acknowledges_a_failure_and_absorbs_its_retransmissions():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteClientTransaction(Request(), wire, clock, user, build_ack=lambda r, s: f"ACK {s.status}")
    t.start()
    t.receive_response(Response(180))
    clock.advance(5)
    assert len(wire) == 1  # no retransmission once a provisional came
    t.receive_response(Response(486))
    t.receive_response(Response(486))
    assert wire[1:] == ["ACK 486", "ACK 486"]
    assert user.events == [("response", 180), ("response", 486)]
    assert t.state is State.COMPLETED
    clock.advance(32)
    assert t.state is State.TERMINATED and clock.getDelayedCalls() == []


def test_invite_client_passes_every_2xx_while_accepted():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteClientTransaction(Request(), wire, clock, user, build_ack=lambda r, s: "ACK")
    t.start()
    t.receive_response(Response(200))
    t.receive_response(Response(200))
    assert user.events == [("response", 200), ("response", 200)]
    assert t.state is State.ACCEPTED
    clock.advance(32)
    assert t.state is State.TERMINATED


def test_non_invite_client_retransmits_up_to_t2_and_every_t2_when_proceeding():
    clock, wire, user = Clock(), Wire(), User()
    t = NonInviteClientTransaction(Request("MESSAGE"), wire, clock, user)
    t.start()
    assert retransmission_times(clock, wire, 8) == [0.5, 1.5, 3.5, 7.5]
    t.receive_response(Response(100, "MESSAGE"))
    assert retransmission_times(clock, wire, 20) == [11.5, 15.5, 19.5]
    clock.advance(12.5)
    assert user.events == [("response", 100), ("timeout",)]


def test_non_invite_client_completes_and_waits_timer_k():
    clock, wire, user = Clock(), Wire(), User()
    t = NonInviteClientTransaction(Request("MESSAGE"), wire, clock, user)
    t.start()
    t.receive_response(Response(200, "MESSAGE"))
    t.receive_response(Response(200, "MESSAGE"))
    assert user.events == [("response", 200)]
    clock.advance(5)
    assert t.state is State.TERMINATED and clock.getDelayedCalls() == []


def test_invite_server_retransmits_a_failure_until_acknowledged():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteServerTransaction(Request(), wire, clock, user)
    t.start("100")
    t.receive_request(Request())
    assert wire == ["100", "100"]
    t.respond(Response(486))
    assert retransmission_times(clock, wire, 8) == [0.5, 1.5, 3.5, 7.5]
    t.receive_request(Request("ACK"))
    assert t.state is State.CONFIRMED
    clock.advance(5)
    assert t.state is State.TERMINATED and clock.getDelayedCalls() == []


def test_invite_server_without_ack_times_out_with_timer_h():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteServerTransaction(Request(), wire, clock, user)
    t.start("100")
    t.respond(Response(404))
    clock.advance(32)
    assert user.events == [("timeout",)] and t.state is State.TERMINATED


def test_non_invite_server_absorbs_retransmissions_with_the_last_response():
    clock, wire, user = Clock(), Wire(), User()
    t = NonInviteServerTransaction(Request("MESSAGE"), wire, clock, user)
    t.start()
    t.receive_request(Request("MESSAGE"))
    assert wire == []  # nothing to repeat yet
    t.respond(Response(200, "MESSAGE"))
    t.receive_request(Request("MESSAGE"))
    assert len(wire) == 2
    clock.advance(32)
    assert t.state is State.TERMINATED


def test_a_transport_error_ends_the_transaction_and_tells_the_user():
    clock, user = Clock(), User()

    def broken(message):
        raise OSError("unreachable")

    t = NonInviteClientTransaction(Request("MESSAGE"), broken, clock, user)
    t.start()
    assert user.events == [("transport error",)] and clock.getDelayedCalls() == []


def test_a_connection_lost_before_the_final_response_is_a_transport_error_and_after_it_nothing():
    clock, user, wire = Clock(), User(), Wire()
    invite = InviteClientTransaction(Request(), wire, clock, user, reliable=True, build_ack=lambda r, s: "ACK")
    invite.start()
    invite.receive_response(Response(180))
    invite.transport_failed()
    assert user.events == [("response", 180), ("transport error",)]
    assert invite.state is State.TERMINATED and clock.getDelayedCalls() == []
    invite.transport_failed()
    assert user.events[-1] == ("transport error",) and len(user.events) == 2

    user = User()
    message = NonInviteClientTransaction(Request("MESSAGE", "z9hG4bK-2"), wire, clock, user, reliable=True)
    message.start()
    message.receive_response(Response(200, "MESSAGE", "z9hG4bK-2"))
    message.transport_failed()
    assert user.events == [("response", 200)]


def test_the_layer_absorbs_retransmitted_requests_and_routes_acks():
    clock, user, wire = Clock(), User(), Wire()
    layer = TransactionLayer(clock, user)
    layer.receive_request(Request(), "flow", wire, False, trying=lambda r: "100")
    layer.receive_request(Request(), "flow", wire, False, trying=lambda r: "100")
    assert user.events == [("request", "INVITE", True)]
    assert wire == ["100", "100"]
    layer.server_transaction(Request()).respond(Response(486))
    layer.receive_request(Request("ACK"), "flow", wire, False)
    assert layer.server_transaction(Request()).state is State.CONFIRMED
    layer.receive_request(Request("ACK", "z9hG4bK-2xx"), "flow", wire, False)
    assert user.events[-1] == ("request", "ACK", False)
    clock.advance(10)
    assert layer.counts() == (0, 0)


def test_the_layer_matches_responses_to_client_transactions_and_passes_strays():
    clock, user, wire = Clock(), User(), Wire()
    layer = TransactionLayer(clock, user)
    client = User()
    layer.send_request(Request("MESSAGE", "z9hG4bK-c"), wire, False, client)
    layer.receive_response(Response(200, "MESSAGE", "z9hG4bK-c"), "flow")
    layer.receive_response(Response(200, "MESSAGE", "z9hG4bK-unknown"), "flow")
    assert client.events == [("response", 200)]
    assert user.events == [("stray", 200)]


def test_requests_without_a_magic_cookie_branch_go_straight_to_the_user():
    clock, user, wire = Clock(), User(), Wire()
    layer = TransactionLayer(clock, user)
    layer.receive_request(Request("OPTIONS", "old-2543-branch"), "flow", wire, False)
    assert user.events == [("request", "OPTIONS", False)]
    assert layer.counts() == (0, 0)


@pytest.mark.parametrize("reliable", [False, True])
def test_no_timer_outlives_a_terminated_transaction(reliable):
    clock, wire, user = Clock(), Wire(), User()
    for t in (
        InviteClientTransaction(Request(), wire, clock, user, reliable, build_ack=lambda r, s: "ACK"),
        NonInviteClientTransaction(Request("MESSAGE"), wire, clock, user, reliable),
    ):
        t.start()
    clock.advance(64)
    assert clock.getDelayedCalls() == []


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 40)),
        st.tuples(st.just("response"), st.sampled_from([100, 180, 200, 302, 486, 503])),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["INVITE", "MESSAGE"]), st.booleans(), events)
def test_any_history_ends_with_one_outcome_and_no_timers(method, reliable, history):
    clock, wire, user = Clock(), Wire(), User()
    if method == "INVITE":
        t = InviteClientTransaction(Request(), wire, clock, user, reliable, build_ack=lambda r, s: "ACK")
    else:
        t = NonInviteClientTransaction(Request("MESSAGE"), wire, clock, user, reliable)
    t.start()
    for kind, value in history:
        if kind == "advance":
            clock.advance(value)
        else:
            t.receive_response(Response(value, method))
    for _ in range(40):  # Clock.advance runs timers set during it only if due by then
        clock.advance(10)
    finals = [e for e in user.events if e[0] == "response" and e[1] >= 300]
    assert len(finals) <= 1
    if method == "MESSAGE":
        assert len([e for e in user.events if e[0] == "timeout" or (e[0] == "response" and e[1] >= 200)]) <= 1
    assert t.state is State.TERMINATED
    assert clock.getDelayedCalls() == []


def test_an_invite_ringing_past_timer_c_is_given_up():
    clock, wire, user = Clock(), Wire(), User()
    t = InviteClientTransaction(Request(), wire, clock, user, build_ack=lambda r, s: "ACK")
    t.start()
    t.receive_response(Response(180))
    clock.advance(100)
    t.receive_response(Response(183))
    clock.advance(180)
    assert user.events[-1] == ("response", 183)
    clock.advance(1)
    assert user.events[-1] == ("timeout",)
    t.receive_response(Response(487))
    assert t.state is State.COMPLETED
    clock.advance(40)
    assert t.state is State.TERMINATED and clock.getDelayedCalls() == []


# -- completed non-INVITE server transactions, as a busy registrar holds them


REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-reg-1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@example.com>;tag=a1\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"Call-ID: reg-1@192.0.2.7\r\n"
    b"CSeq: 7 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.7:5062;transport=udp>;+sip.instance=\"<urn:uuid:1>\"\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Transport(list):
    """A send callable like the SIP transport's: it returns the octets sent."""

    def __call__(self, message):
        data = serialize(message)
        self.append(data)
        return data


def registrar_answer(request):
    return make_response(
        request, 200, to_tag="t1",
        headers=[("Contact", '<sip:alice@192.0.2.7:5062;transport=udp>;expires=3600'),
                 ("Supported", "path, outbound"), ("Date", "Thu, 01 Jan 1970 00:00:01 GMT")],
    )


def test_a_completed_transaction_answers_a_retransmission_with_the_same_octets():
    clock, wire, user = Clock(), Transport(), User()
    request = parse_message(REGISTER)
    t = NonInviteServerTransaction(request, wire, clock, user)
    t.start()
    response = registrar_answer(request)
    t.respond(response)
    t.receive_request(parse_message(REGISTER))
    clock.advance(20)
    t.receive_request(parse_message(REGISTER))
    assert wire == [serialize(response)] * 3
    assert t.last_response == parse_message(serialize(response))
    assert t.request is None  # only the answer is kept
    clock.advance(12)
    assert t.state is State.TERMINATED


def test_a_completed_transaction_keeps_a_provisional_answer_as_the_message():
    clock, wire, user = Clock(), Transport(), User()
    request = parse_message(REGISTER)
    t = NonInviteServerTransaction(request, wire, clock, user)
    t.start()
    trying = make_response(request, 100)
    t.respond(trying)
    assert t.last_response is trying and t.state is State.PROCEEDING
    t.receive_request(parse_message(REGISTER))
    assert wire == [serialize(trying)] * 2


def test_a_layer_waits_out_every_timer_j_on_one_clock_call_each_exactly_32_s():
    clock, user = Clock(), User()
    layer = TransactionLayer(clock, user)
    transactions = []
    for i in range(50):
        wire = Wire()
        request = Request("MESSAGE", f"z9hG4bK-{i}")
        layer.receive_request(request, "flow", wire, False)
        t = layer.server_transaction(request)
        t.respond(Response(200, "MESSAGE", f"z9hG4bK-{i}"))
        transactions.append(t)
        clock.advance(0.1)
    assert layer.counts() == (50, 0)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(31.9 - 0.1 * 50 + 0.0001)  # 31.9 s after the first answer
    assert transactions[0].state is State.COMPLETED
    clock.advance(0.1)
    assert transactions[0].state is State.TERMINATED and transactions[1].state is State.COMPLETED
    layer.receive_request(Request("MESSAGE", "z9hG4bK-1"), "flow", Wire(), False)
    assert user.events[-1] == ("request", "MESSAGE", True)  # absorbed: still the first one
    assert len(user.events) == 50
    clock.advance(5)
    assert layer.counts() == (0, 0) and clock.getDelayedCalls() == []


def test_over_tcp_a_completed_transaction_ends_at_once():
    clock, user = Clock(), User()
    layer = TransactionLayer(clock, user)
    layer.receive_request(Request("MESSAGE"), "flow", Wire(), True)
    layer.server_transaction(Request("MESSAGE")).respond(Response(200, "MESSAGE"))
    clock.advance(0)
    assert layer.counts() == (0, 0)
