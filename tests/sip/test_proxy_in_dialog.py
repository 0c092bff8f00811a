"""
Requests inside a dialog whose next hop is a host name: the proxy locates
it (RFC 3263, through the service's locator), forwards to the first server
found and moves on to the next on a timeout, a transport error or a 503;
a name that gives no server is answered 503 "cannot resolve <host>".
Driven through the real proxy and transaction layer with a fake locator,
a recording transport and a Clock.
"""

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from communigate.directory.errors import DirectoryError
from communigate.network import NetworkConfiguration
from communigate.storage import MemoryStore
from communigate.sip.locate import Target
from communigate.sip.message import make_response, parse_message
from communigate.sip.nexthop import NextHops, try_in_turn
from communigate.sip.proxy import Proxy
from communigate.sip.transaction import TransactionLayer
from communigate.sip.transport import Flow
from communigate.sip.uri import parse_uri

US = ("192.0.2.10", 5060)
CALLER = Flow("udp", US, ("198.51.100.7", 5060))


class Locator:
    """
    Answers each locate() with a Deferred the test fires.
    """

    def __init__(self):
        self.asked = []

    def locate(self, host, **kwargs):
        d = defer.Deferred()
        self.asked.append((host, kwargs, d))
        return d

    def answer(self, *targets, index=-1):
        self.asked[index][2].callback(list(targets))


class Directory:
    def real_domain(self, name):
        if name.lower() != "example.com":
            raise DirectoryError(f"{name} is not a local domain")
        return "example.com"


class Context:
    directory = Directory()
    signals = None


class Transport:
    def __init__(self):
        self.sent = []
        self.refuse = set()

    def send(self, message, flow):
        if flow.remote in self.refuse:
            raise OSError(f"cannot send to {flow.remote}")
        self.sent.append((message, flow))


class KeepAlive:
    def forget(self, flow):
        pass


class Service:
    """
    What the proxy reads of the SIP service, and the transaction user of
    the server transactions.
    """

    def __init__(self, locator):
        self.clock = Clock()
        self.context = Context()
        self.locator = locator
        self.transport = Transport()
        self.keepalives = KeepAlive()
        self.network = NetworkConfiguration(MemoryStore(), clock=self.clock)
        self.transactions = TransactionLayer(self.clock, self)
        self.proxy = Proxy(self)
        self.upstream = []

    def local_hosts(self):
        return {US}

    def address_for(self, transport):
        return US

    def advertised_address(self, transport, peer):
        return US

    def receive(self, text: str):
        request = parse_message(text.replace("\n", "\r\n").encode())
        self.transactions.receive_request(
            request, CALLER, self.upstream.append, False, trying=lambda r: make_response(r, 100)
        )

    def request_received(self, request, flow, transaction):
        self.proxy.request(request, flow, transaction)

    def response_received(self, transaction, response):
        pass

    def timed_out(self, transaction):
        pass

    def transport_error(self, transaction):
        pass

    def stray_response(self, response, flow):
        pass

    def answer_downstream(self, index, status, reason=None):
        request, flow = self.transport.sent[index]
        self.transactions.receive_response(make_response(request, status, reason, to_tag="b1"), flow)

    def final_statuses(self):
        return [(r.status, r.reason) for r in self.upstream if r.status >= 200]


def in_dialog(method="BYE", uri="sip:bob@uas.remote.test:5070", routes=("<sip:192.0.2.10:5060;lr>",)):
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-caller-1;rport",
        *(f"Route: {route}" for route in routes),
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@remote.test>;tag=b1",
        "Call-ID: call-1@198.51.100.7",
        f"CSeq: 3 {method}",
        "Max-Forwards: 70",
        "Content-Length: 0",
    ]
    return "\n".join(lines) + "\n\n"


def test_a_bye_to_a_contact_name_is_located_then_sent_to_the_first_server():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog())
    assert [(host, kwargs["port"], kwargs["scheme"]) for host, kwargs, _ in locator.asked] == [
        ("uas.remote.test", 5070, "sip")
    ]
    assert service.transport.sent == []
    locator.answer(Target("udp", "203.0.113.5", 5070), Target("udp", "203.0.113.6", 5070))
    (bye, flow), = service.transport.sent
    assert (bye.method, str(bye.uri)) == ("BYE", "sip:bob@uas.remote.test:5070")
    assert (flow.transport, flow.remote, flow.server_name) == ("udp", ("203.0.113.5", 5070), "uas.remote.test")
    assert "Route" not in bye.headers  # ours was popped
    service.answer_downstream(0, 200)
    assert service.final_statuses() == [(200, "OK")]


def test_the_next_server_is_tried_after_a_timeout_and_after_a_503():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog())
    locator.answer(
        Target("udp", "203.0.113.5", 5070), Target("udp", "203.0.113.6", 5070), Target("tcp", "203.0.113.7", 5070)
    )
    service.clock.advance(32)  # Timer F: the first server never answered
    assert [flow.remote[0] for _, flow in service.transport.sent][-1] == "203.0.113.6"
    service.answer_downstream(-1, 503)
    last, flow = service.transport.sent[-1]
    assert (flow.transport, flow.remote) == ("tcp", ("203.0.113.7", 5070))
    branches = {message.top_via().branch for message, _ in service.transport.sent}
    assert len(branches) == 3  # a new client transaction for each server
    assert service.final_statuses() == []
    service.answer_downstream(-1, 200)
    assert service.final_statuses() == [(200, "OK")]


def test_the_last_servers_503_goes_upstream_as_it_came():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog())
    locator.answer(Target("udp", "203.0.113.5", 5070))
    service.answer_downstream(0, 503, "Overloaded")
    assert service.final_statuses() == [(503, "Overloaded")]


@pytest.mark.parametrize("has_locator", [True, False])
def test_a_name_that_gives_no_server_is_answered_503_cannot_resolve(has_locator):
    locator = Locator() if has_locator else None
    service = Service(locator)
    service.receive(in_dialog())
    if has_locator:
        locator.answer()
    assert service.transport.sent == []
    assert service.final_statuses() == [(503, "cannot resolve uas.remote.test")]


def test_a_route_by_name_is_located_with_its_transport_and_sips_scheme():
    locator = Locator()
    service = Service(locator)
    service.receive(
        in_dialog(routes=("<sip:192.0.2.10:5060;lr>", "<sips:edge.remote.test;transport=tcp;lr>"))
    )
    (host, kwargs, _), = locator.asked
    assert (host, kwargs["scheme"], kwargs["transport"], kwargs["port"]) == ("edge.remote.test", "sips", "tcp", None)
    locator.answer(Target("tls", "203.0.113.9", 5061))
    (bye, flow), = service.transport.sent
    assert str(bye.uri) == "sip:bob@uas.remote.test:5070"  # the Request-URI stays; the Route is followed
    assert bye.headers.get("Route") == "<sips:edge.remote.test;transport=tcp;lr>"
    assert (flow.transport, flow.remote, flow.server_name) == ("tls", ("203.0.113.9", 5061), "edge.remote.test")


def test_an_ip_literal_next_hop_is_sent_at_once_without_the_locator():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog(uri="sip:bob@203.0.113.5:5070;transport=tcp"))
    assert locator.asked == []
    (bye, flow), = service.transport.sent
    assert (flow.transport, flow.remote, flow.server_name) == ("tcp", ("203.0.113.5", 5070), "203.0.113.5")


def test_a_stateless_ack_to_a_name_is_sent_after_the_lookup_skipping_servers_that_cannot_be_sent_to():
    locator = Locator()
    service = Service(locator)
    service.transport.refuse.add(("203.0.113.5", 5070))
    service.receive(in_dialog(method="ACK"))
    assert service.transport.sent == [] and len(locator.asked) == 1
    locator.answer(Target("tcp", "203.0.113.5", 5070), Target("udp", "203.0.113.6", 5070))
    (ack, flow), = service.transport.sent
    assert ack.method == "ACK" and flow.remote == ("203.0.113.6", 5070)
    assert service.upstream == []  # an ACK is never answered


def test_a_stream_that_fails_before_the_answer_moves_on_to_the_next_server_at_once():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog())
    locator.answer(Target("tls", "203.0.113.5", 5061), Target("udp", "203.0.113.6", 5070))
    _, first = service.transport.sent[0]
    # The transport reports the TLS connection lost (a certificate that did not verify).
    service.proxy.flow_closed(Flow("tls", ("192.0.2.10", 40000), first.remote))
    assert [flow.remote for _, flow in service.transport.sent] == [("203.0.113.5", 5061), ("203.0.113.6", 5070)]
    service.answer_downstream(-1, 200)
    assert service.final_statuses() == [(200, "OK")]


def test_a_stream_that_fails_with_no_other_server_gives_503_long_before_timer_f():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog())
    locator.answer(Target("tls", "203.0.113.5", 5061))
    service.proxy.flow_closed(Flow("tls", ("192.0.2.10", 40000), ("203.0.113.5", 5061)))
    assert service.final_statuses() == [(503, "Service Unavailable")]


def test_a_reinvite_cancelled_while_its_hop_is_located_is_answered_487_and_not_sent():
    locator = Locator()
    service = Service(locator)
    service.receive(in_dialog(method="INVITE"))
    service.receive(in_dialog(method="CANCEL"))
    locator.answer(Target("udp", "203.0.113.5", 5070))
    assert service.transport.sent == []
    statuses = service.final_statuses()
    assert (200, "OK") in statuses and (487, "Request Terminated") in statuses


def test_try_in_turn_gives_the_last_attempt_no_way_on():
    tried = []
    a, b, c = (Flow("udp", US, (f"203.0.113.{n}", 5060)) for n in (1, 2, 3))

    def attempt(flow, next_one):
        tried.append((flow, next_one is None))
        if next_one is not None:
            next_one(503, "busy")

    try_in_turn([a, b, c], attempt, lambda: tried.append("none"))
    assert tried == [(a, False), (b, False), (c, True)]
    try_in_turn([], attempt, lambda: tried.append("none"))
    assert tried[-1] == "none"


def test_next_hops_refuse_what_cannot_be_sent_to():
    hops = NextHops(Service(None))
    failures = []
    for text in ("tel:+15551234", "sip:bob@203.0.113.5;transport=sctp"):
        hops.locate(parse_uri(text)).addErrback(lambda f: failures.append(str(f.value)))
    assert failures == ["cannot send to tel:+15551234", "unsupported transport sctp"]
    flow = hops.flow_for_uri(parse_uri("sips:bob@203.0.113.5;transport=tcp"))
    assert (flow.transport, flow.remote) == ("tls", ("203.0.113.5", 5061))
