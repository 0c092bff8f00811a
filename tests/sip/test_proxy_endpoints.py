"""
The proxy's client objects towards remote SIP servers: unreachable targets
answer 503 at once, host names are located (RFC 3263) and the servers
found are tried in turn until one answers.
"""

from twisted.internet import defer

from communigate.sip.locate import Target
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
