"""
The proxy's client objects when the target cannot be reached: the Signal
gets 503 at once, and cancelling that delivery is harmless.
"""

from communigate.sip.proxy import RemoteEndpoint
from communigate.sip.uri import parse_uri


class Proxy:
    def flow_for_uri(self, uri):
        raise OSError("no address for example.net: DNS location of next hops is not wired yet")


class Responder:
    def __init__(self):
        self.finals = []

    def provisional(self, response):
        raise AssertionError("no provisional expected")

    def final(self, response):
        self.finals.append(response)


def test_an_unreachable_remote_target_answers_503_and_ignores_cancel():
    endpoint = RemoteEndpoint(Proxy(), parse_uri("sip:bob@example.net"))
    responder = Responder()
    delivery = endpoint.deliver(None, responder)
    assert [(r.code, r.reason) for r in responder.finals] == [
        (503, "no address for example.net: DNS location of next hops is not wired yet")
    ]
    delivery.cancel()
