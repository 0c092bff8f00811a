"""
The proxy's client objects towards remote SIP servers: unreachable targets
answer 503 at once, host names are located (RFC 3263) and the servers
found are tried in turn until one answers.
"""

from twisted.internet import defer

from communigate.sip.locate import Target
from communigate.sip.media_hook import MediaRelayPolicy
from communigate.sip.message import Headers, Response
from communigate.sip.nexthop import NextHops
from communigate.sip.proxy import RemoteEndpoint
from communigate.sip.uri import parse_uri


class Service:
    def __init__(self, locator=None):
        self.locator = locator

    def address_for(self, transport):
        return ("127.0.0.1", 5060)


class Proxy:
    def __init__(self, locator=None):
        self.service = Service(locator)
        self.hops = NextHops(self.service)
        self.media = MediaRelayPolicy(self.service, None)  # no relay: messages pass unchanged
        self.sent = []

    def outgoing(self, signal, target_uri, flow, route_set):
        return ("request", str(target_uri), flow)

    def send_request(self, request, flow, branch):
        self.sent.append((flow, branch))


class Locator:
    def __init__(self, targets):
        self.targets = targets
        self.asked = []

    def locate(self, host, **kwargs):
        self.asked.append(host)
        return defer.succeed(self.targets)


class Responder:
    def __init__(self):
        self.finals = []
        self.provisionals = []

    def provisional(self, response):
        self.provisionals.append(response)

    def final(self, response):
        self.finals.append(response)


def answer(status):
    return Response(status, "", Headers([]))


def test_a_remote_name_without_dns_servers_answers_503_and_ignores_cancel():
    endpoint = RemoteEndpoint(Proxy(), parse_uri("sip:bob@example.net"))
    responder = Responder()
    delivery = endpoint.deliver(None, responder)
    assert [(r.code, r.reason) for r in responder.finals] == [(503, "cannot resolve example.net")]
    delivery.cancel()


def test_located_servers_are_tried_in_turn_until_one_answers():
    locator = Locator([Target("udp", "192.0.2.1", 5060), Target("tcp", "192.0.2.2", 5070)])
    proxy = Proxy(locator)
    responder = Responder()
    RemoteEndpoint(proxy, parse_uri("sip:bob@example.net")).deliver(None, responder)
    assert locator.asked == ["example.net"]
    (first_flow, first_branch), = proxy.sent
    assert (first_flow.transport, first_flow.remote) == ("udp", ("192.0.2.1", 5060))
    first_branch.timed_out(None)
    (second_flow, second_branch) = proxy.sent[1]
    assert (second_flow.transport, second_flow.remote) == ("tcp", ("192.0.2.2", 5070))
    second_branch.response_received(None, answer(200))
    assert [r.code for r in responder.finals] == [200]


def test_when_every_located_server_fails_the_last_failure_is_the_answer():
    locator = Locator([Target("udp", "192.0.2.1", 5060)])
    proxy = Proxy(locator)
    responder = Responder()
    RemoteEndpoint(proxy, parse_uri("sip:bob@example.net")).deliver(None, responder)
    proxy.sent[0][1].response_received(None, answer(503))
    assert [r.code for r in responder.finals] == [503]
    nothing = Proxy(Locator([]))
    responder = Responder()
    RemoteEndpoint(nothing, parse_uri("sip:bob@nowhere.example")).deliver(None, responder)
    assert [(r.code, r.reason) for r in responder.finals] == [(503, "cannot resolve nowhere.example")]


def test_a_delivery_cancelled_while_locating_answers_487_and_sends_nothing():
    pending = defer.Deferred()

    class Slow(Locator):
        def locate(self, host, **kwargs):
            return pending

    proxy = Proxy(Slow([]))
    responder = Responder()
    delivery = RemoteEndpoint(proxy, parse_uri("sip:bob@example.net")).deliver(None, responder)
    delivery.cancel()
    pending.callback([Target("udp", "192.0.2.1", 5060)])
    assert proxy.sent == [] and [r.code for r in responder.finals] == [487]


def binding(contact, path=(), nat=False, source=("udp", "203.0.113.5", 5060)):
    from communigate.sip.bindings import Binding

    return Binding(
        aor="bob@example.com", contact=contact, expires_at=10**10, q=1.0, call_id="c", cseq=1,
        path=path, source=source, local=("udp", "127.0.0.1", 5060), nat=nat,
    )


class ContactProxy(Proxy):
    def flow_for_uri(self, uri, local=None):
        return self.hops.flow_for_uri(uri, local=local)


def test_a_registered_contact_named_by_host_name_is_located():
    from communigate.sip.proxy import ContactEndpoint

    locator = Locator([Target("udp", "192.0.2.7", 5062)])
    proxy = ContactProxy(locator)
    responder = Responder()
    ContactEndpoint(proxy, binding("sip:bob@phone.example.net")).deliver(None, responder)
    assert locator.asked == ["phone.example.net"]
    (flow, branch), = proxy.sent
    assert (flow.transport, flow.remote) == ("udp", ("192.0.2.7", 5062))
    branch.response_received(None, answer(200))
    assert [r.code for r in responder.finals] == [200]


def test_a_contact_with_a_path_is_reached_through_its_first_hop():
    """RFC 3327: the Path of a binding is the route to it; the first hop
    is where the request goes, whether an address or a name."""
    from communigate.sip.proxy import ContactEndpoint

    proxy = ContactProxy(Locator([Target("udp", "192.0.2.9", 5060)]))
    ContactEndpoint(proxy, binding("sip:bob@10.0.0.5", path=("<sip:192.0.2.8:5070;lr>",))).deliver(None, Responder())
    assert proxy.sent[0][0].remote == ("192.0.2.8", 5070)
    named = ContactProxy(Locator([Target("udp", "192.0.2.9", 5060)]))
    ContactEndpoint(named, binding("sip:bob@10.0.0.5", path=("<sip:edge.example.net;lr>",))).deliver(None, Responder())
    assert named.service.locator.asked == ["edge.example.net"]
    assert named.sent[0][0].remote == ("192.0.2.9", 5060)


def test_a_contact_behind_nat_is_reached_over_its_flow_without_lookup():
    from communigate.sip.proxy import ContactEndpoint

    locator = Locator([])
    proxy = ContactProxy(locator)
    ContactEndpoint(proxy, binding("sip:bob@phone.example.net", nat=True)).deliver(None, Responder())
    assert locator.asked == []
    assert proxy.sent[0][0].remote == ("203.0.113.5", 5060)
