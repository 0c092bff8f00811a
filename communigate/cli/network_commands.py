"""
The CLI commands of the server-wide network settings
(L{communigate.network}): C{GET/SETLANIPS}, C{GET/SETCLIENTIPS},
C{GET/SETNATEDIPS}, C{GET/SETDEBUGIPS}, C{GET/SETBLACKLISTEDIPS} for one
address list each, and C{GETNETWORK}/C{UPDATENETWORK} for them all with
the WAN addresses.

A list is one string whose lines are joined with C{\\e} (or C{\\n}), as
CommuniGate's CLI writes it.  It is checked whole, and a bad line is
refused with its number, so a typo never half-replaces a working list.
"""

from communigate.cli.arguments import CommandError
from communigate.network import LIST_KEYS, NetworkConfiguration, NetworkSettingsError


class NetworkCommands:
    """
    The network command set of the CLI interpreter.
    """

    def __init__(self, configuration: NetworkConfiguration) -> None:
        self._configuration = configuration

    def _get(self, key: str, arguments) -> str:
        arguments.end()
        return self._configuration.settings()[key]

    def _set(self, key: str, arguments) -> None:
        text = arguments.string(f"{key} text")
        arguments.end()
        self._update({key: text})

    def _update(self, changes: dict) -> None:
        try:
            self._configuration.update(changes)
        except NetworkSettingsError as e:
            raise CommandError(f"network settings not changed: {e}") from e

    def command_GETLANIPS(self, context, arguments):
        """GETLANIPS"""
        return self._get(LIST_KEYS["LANIPS"], arguments)

    def command_SETLANIPS(self, context, arguments):
        """SETLANIPS newAddresses"""
        self._set(LIST_KEYS["LANIPS"], arguments)

    def command_GETCLIENTIPS(self, context, arguments):
        """GETCLIENTIPS"""
        return self._get(LIST_KEYS["CLIENTIPS"], arguments)

    def command_SETCLIENTIPS(self, context, arguments):
        """SETCLIENTIPS newAddresses"""
        self._set(LIST_KEYS["CLIENTIPS"], arguments)

    def command_GETNATEDIPS(self, context, arguments):
        """GETNATEDIPS"""
        return self._get(LIST_KEYS["NATEDIPS"], arguments)

    def command_SETNATEDIPS(self, context, arguments):
        """SETNATEDIPS newAddresses"""
        self._set(LIST_KEYS["NATEDIPS"], arguments)

    def command_GETDEBUGIPS(self, context, arguments):
        """GETDEBUGIPS"""
        return self._get(LIST_KEYS["DEBUGIPS"], arguments)

    def command_SETDEBUGIPS(self, context, arguments):
        """SETDEBUGIPS newAddresses"""
        self._set(LIST_KEYS["DEBUGIPS"], arguments)

    def command_GETBLACKLISTEDIPS(self, context, arguments):
        """GETBLACKLISTEDIPS"""
        return self._get(LIST_KEYS["BLACKLISTEDIPS"], arguments)

    def command_SETBLACKLISTEDIPS(self, context, arguments):
        """SETBLACKLISTEDIPS newAddresses"""
        self._set(LIST_KEYS["BLACKLISTEDIPS"], arguments)

    def command_GETNETWORK(self, context, arguments):
        """GETNETWORK"""
        arguments.end()
        return self._configuration.settings()

    def command_UPDATENETWORK(self, context, arguments):
        """UPDATENETWORK newSettings"""
        changes = arguments.dictionary("network settings")
        arguments.end()
        self._update(changes)
