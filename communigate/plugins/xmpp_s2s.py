"""
Server-to-server XMPP as a protocol-module plugin: C{twistd communigate
--xmpp-s2s tcp:5269}.  It works with the C{--xmpp} service (same
settings, certificate and sessions); C{--xmpp-s2s none} turns it off.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import IProtocolModule
from communigate.listening import check_stream_description


@implementer(IPlugin, IProtocolModule)
class XMPPServerModule:
    """
    XMPP server-to-server streams (RFC 6120): STARTTLS and Server Dialback
    (XEP-0220), SRV lookups of _xmpp-server._tcp, message and presence
    routing between domains.
    """

    name = "xmpp-s2s"
    description = "Where other XMPP servers connect: tcp:5269, tcp:5269:interface=127.0.0.1."
    default_listen = ("tcp:5269",)

    def check_listen(self, description: str) -> None:
        check_stream_description(description)

    def build_service(self, context, descriptions):
        from communigate.xmpp.s2s_commands import S2SCommands
        from communigate.xmpp.s2s_service import S2SService

        service = S2SService(context, descriptions)
        context.interpreter.add_commands(S2SCommands(service))
        return service


xmpp_s2s_module = XMPPServerModule()
