"""
The CLI/PWD front end as a protocol-module plugin: C{twistd communigate --cli}.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.admin.pwd import PWDFactory
from communigate.interfaces import IProtocolModule
from communigate.listening import check_stream_description, stream_listeners


@implementer(IPlugin, IProtocolModule)
class CLIModule:
    """
    The CLI listener: CommuniGate's command language on TCP 106.

    [D] The banner carries no APOP challenge: passwords are not stored in
    plain text, so APOP cannot be verified, and without the challenge the
    vendor's Perl CGP::CLI falls back to USER/PASS instead of failing.
    """

    name = "cli"
    description = "Where the CLI (PWD) listener listens, e.g. tcp:106:interface=127.0.0.1."
    default_listen = ("tcp:106",)

    def check_listen(self, description: str) -> None:
        check_stream_description(description)

    def build_service(self, context, descriptions):
        # One factory for every address, so they share the login throttle.
        factory = PWDFactory(
            context.portal,
            context.interpreter,
            context.reactor,
            context.hostname,
            context.metrics,
            banner_challenge=False,
        )
        return stream_listeners(context.reactor, self.name, descriptions, factory)


cli_module = CLIModule()
