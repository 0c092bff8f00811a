"""
CLI commands of the XMPP module: its settings and its sessions.

C{KILLACCOUNTSESSIONS} is CommuniGate's name for ending every session of
an account; here it ends the account's XMPP sessions (the only sessions
that exist yet besides the CLI's own).
"""

from twisted.words.protocols.jabber.jid import InvalidFormat

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified
from communigate.tls_trust import load_authorities, load_revocation_lists
from communigate.xmpp.settings import RECORD, checked, stored_settings
from communigate.xmpp.tls import CertificateError, load_context


class XMPPSettingsCommands:
    """
    C{GETXMPPSETTINGS} and C{UPDATEXMPPSETTINGS}, in force at once.
    """

    def __init__(self, service) -> None:
        self._service = service

    def command_GETXMPPSETTINGS(self, context, arguments):
        """GETXMPPSETTINGS"""
        arguments.end()
        return stored_settings(self._service.context.store)

    def command_UPDATEXMPPSETTINGS(self, context, arguments):
        """UPDATEXMPPSETTINGS newSettings"""
        changes = arguments.dictionary("XMPP settings")
        arguments.end()

        def check(every: dict) -> None:
            settings = checked(every)
            if settings.certificate_file:
                try:
                    load_context(self._service.certificate_path(settings.certificate_file))
                except CertificateError as e:
                    raise ValueError(f"CertificateFile: {e}") from e
            if settings.s2s_trusted_ca_file:
                path = self._service.certificate_path(settings.s2s_trusted_ca_file)
                load_authorities(path, "S2STrustedCAFile")
            if settings.s2s_crl_file:
                load_revocation_lists(self._service.certificate_path(settings.s2s_crl_file), "S2SCRLFile")

        try:
            merged, _ = RECORD.change(self._service.context.store, changes, check)
        except ValueError as e:
            raise CommandError(f"XMPP settings not changed: {e}") from e
        self._service.apply_settings(merged)


class XMPPSessionCommands:
    """
    C{LISTXMPPSESSIONS}, C{KILLXMPPSESSION} and C{KILLACCOUNTSESSIONS}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def _describe(self, session) -> dict:
        entry = dict(session.details)
        entry["Account"] = session.account
        entry["Since"] = str(int(self._service.clock.seconds() - session.started))
        return entry

    def command_LISTXMPPSESSIONS(self, context, arguments):
        """LISTXMPPSESSIONS [accountName]"""
        sessions = self._service.sessions
        if arguments.at_end():
            found = sessions.all_sessions()
        else:
            name = qualified(context, arguments.string("account name"))
            arguments.end()
            found = sessions.resources(self._service.context.directory.account_name(name))
        return [self._describe(session) for session in found]

    def command_KILLXMPPSESSION(self, context, arguments):
        """KILLXMPPSESSION fullJID"""
        text = arguments.string("full JID")
        arguments.end()
        try:
            session = self._service.sessions.lookup(text)
        except (InvalidFormat, UnicodeError, ValueError):
            raise CommandError(f"{text!r} is not a full JID (user@domain/resource)") from None
        if session is None:
            raise CommandError(f"no XMPP session {text!r}")
        session.close("policy-violation", "the session was ended by an administrator")

    def command_KILLACCOUNTSESSIONS(self, context, arguments):
        """KILLACCOUNTSESSIONS accountName"""
        name = qualified(context, arguments.string("account name"))
        arguments.end()
        account = self._service.context.directory.account_name(name)
        for session in self._service.sessions.resources(account):
            session.close("policy-violation", "the account's sessions were ended by an administrator")
