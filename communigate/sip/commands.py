"""
CLI commands of the SIP module: registrations and the SIP log.
"""

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified
from communigate.core.server_settings import SettingsRecord
from communigate.sip.tls import DEFAULT_TLS_SETTINGS, load_client_tls, tls_settings


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


SETTINGS_KEY = "sip-settings"

#: The SIP settings and their built-in values.
DEFAULT_SETTINGS = {
    # Requests one source address may send per second, and in a burst,
    # before it gets 503 with Retry-After.
    "RequestRate": "50",
    "RequestBurst": "200",
    # Seconds between keep-alives to a client behind NAT (5-3600).
    "KeepAliveInterval": "25",
    # DNS servers for locating remote SIP servers (RFC 3263), as
    # "ip:port, ip:port"; empty means those of /etc/resolv.conf.
    "DNSServers": "",
    # Outgoing SIP over TLS (communigate/sip/tls.py): check the servers'
    # certificates (YES; NO for a lab only), a PEM file of CAs trusted
    # besides the platform's, a PEM file of our certificate and key.
    **DEFAULT_TLS_SETTINGS,
}

RECORD = SettingsRecord(SETTINGS_KEY, DEFAULT_SETTINGS)


def sip_settings(store) -> dict:
    """
    The SIP settings in force: the stored ones over the built-in values.
    """
    return RECORD.effective(store)


def dns_servers(settings: dict) -> list[tuple[str, int]]:
    """
    The C{DNSServers} setting as C{(ip, port)} pairs; L{ValueError} names a
    bad entry.
    """
    from communigate.dnsclient import parse_server_address

    text = settings.get("DNSServers", "")
    if not isinstance(text, str):
        raise ValueError(f"DNSServers must be text like \"192.0.2.53:53, 192.0.2.54\", not {text!r}")
    return [parse_server_address(entry.strip(), setting="DNSServers") for entry in text.split(",") if entry.strip()]


def checked_sip_settings(settings: dict) -> tuple[float, float, float]:
    """
    The request rate, burst and keep-alive interval of C{settings}, or
    L{ValueError} naming the bad one.  The TLS files are not read here
    (L{load_client_tls} does, for C{UPDATESIPSETTINGS}).
    """
    dns_servers(settings)
    tls_settings(settings)
    numbers = []
    for key in ("RequestRate", "RequestBurst"):
        try:
            number = float(settings[key])
        except (TypeError, ValueError):
            raise ValueError(f"{key} must be a positive number, not {settings[key]!r}") from None
        if number <= 0 or (key == "RequestBurst" and number < 1):
            raise ValueError(f"{key} must be a positive number (a burst at least 1), not {settings[key]!r}")
        numbers.append(number)
    try:
        interval = float(settings["KeepAliveInterval"])
    except (TypeError, ValueError):
        interval = -1.0
    if not 5 <= interval <= 3600:
        raise ValueError(f"KeepAliveInterval must be 5 to 3600 seconds, not {settings['KeepAliveInterval']!r}")
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown SIP settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    return numbers[0], numbers[1], interval


class SIPSettingsCommands:
    """
    C{GETSIPSETTINGS} and C{UPDATESIPSETTINGS}: the SIP module's own
    settings, in force at once.
    """

    def __init__(self, service) -> None:
        self._service = service

    def command_GETSIPSETTINGS(self, context, arguments):
        """GETSIPSETTINGS"""
        arguments.end()
        return sip_settings(self._service.context.store)

    def command_UPDATESIPSETTINGS(self, context, arguments):
        """UPDATESIPSETTINGS newSettings"""
        changes = arguments.dictionary("SIP settings")
        arguments.end()

        def check(settings: dict) -> None:
            checked_sip_settings(settings)
            load_client_tls(settings)

        try:
            merged, _ = RECORD.change(self._service.context.store, changes, check)
        except ValueError as e:
            raise CommandError(f"SIP settings not changed: {e}") from e
        self._service.apply_settings(merged)


class RSIPCommands:
    """
    C{GETACCOUNTRSIPS}, C{SETACCOUNTRSIPS} (CommuniGate's) and
    C{LISTRSIPS} [D]: the registrations accounts keep at other servers.
    """

    def __init__(self, service) -> None:
        self._service = service

    def _account(self, context, arguments) -> str:
        name = qualified(context, arguments.string("account name"))
        return self._service.context.directory.account_name(name)

    def command_GETACCOUNTRSIPS(self, context, arguments):
        """GETACCOUNTRSIPS accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._service.rsip.records.load(account)

    def command_SETACCOUNTRSIPS(self, context, arguments):
        """SETACCOUNTRSIPS accountName {id = {domain = d; fromName = n; targetName = t; period = 10m; authName = a; password = p;};}"""
        from communigate.sip.rsip import RSIPError

        account = self._account(context, arguments)
        data = arguments.dictionary("RSIPs")
        arguments.end()
        try:
            self._service.rsip.set(account, data)
        except RSIPError as error:
            raise CommandError(str(error)) from None

    def command_LISTRSIPS(self, context, arguments):
        """LISTRSIPS [accountName]"""
        account = None
        if not arguments.at_end():
            account = self._account(context, arguments)
        arguments.end()
        return self._service.rsip.statuses(account)
