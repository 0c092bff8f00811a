"""
CLI commands of the SIP module: registrations and the SIP log.
"""

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified


class SIPCommands:
    """
    C{GETACCOUNTREGISTRATIONS}, C{KILLACCOUNTREGISTRATIONS}, C{GETSIPLOG}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def _account(self, context, arguments) -> str:
        name = qualified(context, arguments.string("account name"))
        arguments.end()
        return self._service.context.directory.account_name(name)

    def command_GETACCOUNTREGISTRATIONS(self, context, arguments):
        """GETACCOUNTREGISTRATIONS accountName"""
        account = self._account(context, arguments)
        now = self._service.context.reactor.seconds()
        found = []
        for binding in self._service.bindings.lookup(account):
            entry = {
                "Contact": binding.contact,
                "Expires": str(binding.expires_in(now)),
                "Q": f"{binding.q:g}",
                "NAT": "YES" if binding.nat else "NO",
            }
            if binding.source is not None:
                entry["Source"] = "{}:{}:{}".format(*binding.source)
            if binding.user_agent:
                entry["UserAgent"] = binding.user_agent
            found.append(entry)
        return found

    def command_KILLACCOUNTREGISTRATIONS(self, context, arguments):
        """KILLACCOUNTREGISTRATIONS accountName"""
        self._service.bindings.remove(self._account(context, arguments))

    def command_GETSIPLOG(self, context, arguments):
        """GETSIPLOG [{Call-ID = id; Method = m; Status = n; Address = text; Limit = n;}]"""
        criteria = arguments.optional_dictionary("search") or {}
        arguments.end()
        known = {"Call-ID", "Method", "Status", "Address", "Limit"}
        unknown = set(criteria) - known
        if unknown:
            raise CommandError(f"unknown search keys {sorted(unknown)}; use {sorted(known)}")
        try:
            status = int(criteria["Status"]) if "Status" in criteria else None
            limit = int(criteria.get("Limit", 100))
        except (TypeError, ValueError):
            raise CommandError("Status and Limit must be numbers") from None
        entries = self._service.sip_log.search(
            call_id=criteria.get("Call-ID"),
            method=criteria.get("Method"),
            status=status,
            address=criteria.get("Address"),
            limit=max(1, min(limit, 1000)),
        )
        return [entry.as_data() for entry in entries]
