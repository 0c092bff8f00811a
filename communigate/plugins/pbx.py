"""
The PBX as a protocol-module plugin: C{twistd communigate --pbx}.

Its "listen" option is where media channels take their RTP ports:
C{--pbx rtp:20000-29999:interface=127.0.0.1}; C{--pbx none} runs no
tasks (application routes then answer 502).
"""

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import IProtocolModule


@implementer(IPlugin, IProtocolModule)
class PBXModule:
    """
    PBX tasks (the applications of C{program#account} routes and
    C{STARTPBXTASK}) and their media channels.
    """

    name = "pbx"
    description = (
        "The RTP ports PBX media channels take: rtp:20000-29999[:interface=ADDRESS][:address=ADDRESS] "
        "(address: what SDP names, when not the interface)."
    )
    default_listen = ("rtp:20000-29999",)
    log = Logger()

    def check_listen(self, description: str) -> None:
        from communigate.pbx.service import parse_media_description

        parse_media_description(description)

    def build_service(self, context, descriptions):
        from communigate.pbx.commands import PBXCommands
        from communigate.pbx.service import PBXService, parse_media_description

        descriptions = list(descriptions)
        if len(descriptions) > 1:
            self.log.warn("--pbx given {count} times; only {first} is used", count=len(descriptions),
                          first=descriptions[0])
        service = PBXService(context, parse_media_description(descriptions[0]))
        context.interpreter.add_commands(PBXCommands(service))
        return service


pbx_module = PBXModule()
