"""
CLI commands of server-to-server XMPP.

CommuniGate's documented CLI has no command listing XMPP server links;
C{LISTXMPPS2S} is ours [D], named after C{LISTXMPPSESSIONS}.
"""


class S2SCommands:
    """
    C{LISTXMPPS2S}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def command_LISTXMPPS2S(self, context, arguments):
        """LISTXMPPS2S"""
        arguments.end()
        return self._service.streams()
