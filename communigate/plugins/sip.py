"""
The SIP front end as a protocol-module plugin: C{twistd communigate --sip}.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import IProtocolModule
from communigate.listening import STREAM_FORMS, check_stream_description

UDP_FORM = "udp:PORT[:interface=ADDRESS]"


@implementer(IPlugin, IProtocolModule)
class SIPModule:
    """
    SIP over UDP, TCP and TLS: registrar, proxy, and the bridge to the
    Signal service.  C{tls:PORT:privateKey=KEY.pem:certKey=CERT.pem} is
    accepted as a spelling of Twisted's C{ssl:} endpoint.
    """

    name = "sip"
    description = (
        "Where SIP listens: udp:5060, tcp:5060:interface=127.0.0.1, "
        "tls:5061:privateKey=key.pem:certKey=cert.pem."
    )
    default_listen = ("udp:5060", "tcp:5060")

    def check_listen(self, description: str) -> None:
        from communigate.sip.service import _stream_description, parse_udp_description

        if not isinstance(description, str):
            raise ValueError(f"{description!r} is not text; allowed forms: {UDP_FORM}, {STREAM_FORMS}")
        if description.split(":", 1)[0].lower() == "udp":
            try:
                parse_udp_description(description)
            except ValueError as e:
                raise ValueError(f"{e}; allowed forms: {UDP_FORM}, {STREAM_FORMS}") from None
            return
        check_stream_description(_stream_description(description))

    def build_service(self, context, descriptions):
        from communigate.sip.commands import RSIPCommands, SIPCommands, SIPSettingsCommands
        from communigate.sip.service import SIPService

        service = SIPService(context, descriptions)
        context.interpreter.add_commands(SIPCommands(service))
        context.interpreter.add_commands(SIPSettingsCommands(service))
        context.interpreter.add_commands(RSIPCommands(service))
        return service


sip_module = SIPModule()
