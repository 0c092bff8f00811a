"""
The transport's message counters: one series per known method or
response class, so invented methods cannot grow the metrics.
"""

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from communigate.sip.transport import Flow, SIPTransport

FLOW = Flow("udp", ("127.0.0.1", 5060), ("127.0.0.1", 40000))


class Receiver:
    def __init__(self):
        self.messages = []

    def received(self, message, flow):
        self.messages.append(message)

    def malformed(self, error, flow):
        pass

    def keepalive(self, flow):
        pass


def request(method: str) -> bytes:
    return (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: c@h\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def series(registry) -> set[tuple]:
    return {
        (sample.labels["direction"], sample.labels["kind"])
        for metric in registry.collect()
        if metric.name == "communigate_sip_messages"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def test_invented_methods_share_one_series():
    registry = CollectorRegistry()
    receiver = Receiver()
    transport = SIPTransport(Clock(), receiver, registry=registry)
    for method in ("OPTIONS", "FOO", "BAR", "OPTIONS"):
        transport.datagram_received(request(method), FLOW)
    assert len(receiver.messages) == 4
    assert series(registry) == {("in", "OPTIONS"), ("in", "other")}
    assert registry.get_sample_value(
        "communigate_sip_messages_total", {"direction": "in", "transport": "udp", "kind": "OPTIONS"}
    ) == 2
