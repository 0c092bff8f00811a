"""
The XMPP front end as a protocol-module plugin: C{twistd communigate --xmpp}.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import IProtocolModule
from communigate.listening import check_stream_description


@implementer(IPlugin, IProtocolModule)
class XMPPModule:
    """
    XMPP client-to-server streams (RFC 6120): STARTTLS, SASL, resource
    binding, ping, version and service discovery.
    """

    name = "xmpp"
    description = "Where XMPP clients connect: tcp:5222, tcp:5222:interface=127.0.0.1."
    default_listen = ("tcp:5222",)

    def check_listen(self, description: str) -> None:
        check_stream_description(description)

    def build_service(self, context, descriptions):
        from communigate.xmpp.commands import XMPPSessionCommands, XMPPSettingsCommands
        from communigate.xmpp.service import XMPPService

        service = XMPPService(context, descriptions)
        context.interpreter.add_commands(XMPPSettingsCommands(service))
        context.interpreter.add_commands(XMPPSessionCommands(service))
        return service


xmpp_module = XMPPModule()
