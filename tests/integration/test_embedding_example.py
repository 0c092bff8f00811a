"""
examples/embedding.py: communigate inside another Twisted application,
sharing its reactor with the host's web site.
"""

import importlib.util
import os

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import LineReceiver
from twisted.web.client import Agent, readBody

from communigate.testing import free_port

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "embedding.py")


def load_example():
    spec = importlib.util.spec_from_file_location("embedding_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LineCollector(LineReceiver):
    delimiter = b"\r\n"

    def __init__(self):
        self.lines = []
        self.waiting = []

    def lineReceived(self, line):
        self.lines.append(line.decode())
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def next_line(self):
        if self.lines:
            return defer.succeed(self.lines.pop(0))
        d = defer.Deferred()
        self.waiting.append(d)
        return d.addCallback(lambda _: self.lines.pop(0))

    @defer.inlineCallbacks
    def ask(self, line):
        self.sendLine(line.encode())
        reply = yield self.next_line()
        return reply


# Twisted's own Agent hands readBody a transport proxy without
# abortConnection, which makes readBody warn; the body is read all the same.
@pytest.mark.filterwarnings("ignore:Using readBody with a transport")
@pytest_twisted.inlineCallbacks
def test_the_embedded_server_and_the_host_site_share_one_reactor(tmp_path):
    example = load_example()
    web_port, cli_port = free_port(), free_port()
    application = example.build_application(reactor, str(tmp_path / "data"), web_port, cli_port)
    application.startService()
    try:
        password = (tmp_path / "data" / "postmaster-password").read_text().split()[1]
        cli = LineCollector()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", cli_port), cli)
        assert (yield cli.next_line()).startswith("200 ")
        assert (yield cli.ask("USER postmaster")).startswith("300 ")
        assert (yield cli.ask(f"PASS {password}")) == "200 login OK"
        assert (yield cli.ask("CREATEACCOUNT alice {Password = x;}")) == "200 OK"
        cli.transport.loseConnection()

        response = yield Agent(reactor).request(b"GET", f"http://127.0.0.1:{web_port}/".encode())
        body = yield readBody(response)
        assert body == b"example.com has 2 accounts\n"
    finally:
        yield application.stopService()
