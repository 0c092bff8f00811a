"""
CLI commands of the media relay: C{GETMEDIASERVERSETTINGS},
C{SETMEDIASERVERSETTINGS} (replaces the settings; keys left out return
to their built-in values), C{UPDATEMEDIASERVERSETTINGS} (merges; a value
of C{default} restores one), C{LISTMEDIARELAYS} and
C{RELEASEMEDIARELAY}.

The settings commands work on the store, so the admin tool can change
them on a data directory; the running server sees the change within a
second.  Listing and releasing sessions need the running server.
"""

from communigate.cli.arguments import CommandError
from communigate.media.relay_settings import RelayConfiguration


class MediaServerCommands:
    """
    The media server command set of the CLI interpreter.

    @param relay: the server's L{communigate.interfaces.IMediaRelay}, or
        L{None} in a core without a reactor (the admin tool).
    """

    def __init__(self, configuration: RelayConfiguration, relay=None) -> None:
        self._configuration = configuration
        self._relay = relay

    def command_GETMEDIASERVERSETTINGS(self, context, arguments):
        """GETMEDIASERVERSETTINGS"""
        arguments.end()
        return self._configuration.settings()

    def command_SETMEDIASERVERSETTINGS(self, context, arguments):
        """SETMEDIASERVERSETTINGS newSettings"""
        self._store(arguments, merge=False)

    def command_UPDATEMEDIASERVERSETTINGS(self, context, arguments):
        """UPDATEMEDIASERVERSETTINGS newSettings"""
        self._store(arguments, merge=True)

    def _store(self, arguments, merge: bool) -> None:
        settings = arguments.dictionary("media server settings")
        arguments.end()
        try:
            self._configuration.replace(settings, merge=merge)
        except ValueError as e:
            raise CommandError(f"media server settings not changed: {e}") from e

    def command_LISTMEDIARELAYS(self, context, arguments):
        """LISTMEDIARELAYS"""
        arguments.end()
        if self._relay is None:
            raise CommandError("media relays exist only in the running server; use --server")
        return [session.summary() for session in sorted(self._relay.sessions(), key=lambda s: s.created)]

    def command_RELEASEMEDIARELAY(self, context, arguments):
        """RELEASEMEDIARELAY key"""
        key = arguments.string("relay key")
        arguments.end()
        if self._relay is None:
            raise CommandError("media relays exist only in the running server; use --server")
        found = [session for session in self._relay.sessions() if str(session.key) == key]
        if not found:
            raise CommandError(f"no media relay {key!r}; LISTMEDIARELAYS lists them")
        for session in found:
            session.release("operator")
