"""
Run communigate inside another Twisted application.

The host application here is a small twisted.web site; the communigate
server is one more service in the same process, sharing the reactor.  Run:

    python examples/embedding.py DATA_DIR [WEB_PORT] [CLI_PORT]

then browse http://127.0.0.1:WEB_PORT/ (the host's page, which shows how
many accounts the embedded directory holds) and script the embedded server
over its CLI on 127.0.0.1:CLI_PORT.
"""

import sys

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.resource import Resource
from twisted.web.server import Site

from communigate.config import Config
from communigate.server import build_server


class AccountCount(Resource):
    """
    A page of the host application that reads the embedded directory.
    """

    isLeaf = True

    def __init__(self, directory) -> None:
        super().__init__()
        self._directory = directory

    def render_GET(self, request):
        domain = self._directory.main_domain()
        count = len(self._directory.list_accounts(domain))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"{domain} has {count} accounts\n".encode()


def build_application(reactor, data_dir: str, web_port: int, cli_port: int) -> MultiService:
    """
    The host application: its own web site plus an embedded communigate.
    """
    application = MultiService()
    config = Config(
        data_dir=data_dir,
        domain="example.com",
        listen={
            "cli": (f"tcp:{cli_port}:interface=127.0.0.1",),
            "http": (),
            "sip": (),
            "xmpp": (),
            "xmpp-s2s": (),
        },
    )
    server = build_server(config, reactor)
    server.setServiceParent(application)
    site = Site(AccountCount(server.context.directory))
    endpoint = TCP4ServerEndpoint(reactor, web_port, interface="127.0.0.1")
    StreamServerEndpointService(endpoint, site).setServiceParent(application)
    return application


def main(reactor, data_dir: str, web_port: str = "8080", cli_port: str = "10106"):
    from twisted.internet import defer

    application = build_application(reactor, data_dir, int(web_port), int(cli_port))
    application.startService()
    reactor.addSystemEventTrigger("before", "shutdown", application.stopService)
    return defer.Deferred()  # run until interrupted


if __name__ == "__main__":
    from twisted.internet.task import react

    react(main, sys.argv[1:])
