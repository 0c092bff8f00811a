"""
The CLI commands over the directory: domains, accounts, aliases, telephone
numbers, forwarders, groups and the settings defaults.

Syntax and results follow CommuniGate Pro's CLI, so existing scripts and
client libraries (CGP::CLI, CGPCLI) work unchanged.  A name without a
domain part is in the administrator's domain; C{*} is the administrator's
own account.
"""

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from communigate.cli.arguments import ArgumentReader, CommandError
from communigate.directory import Directory
from communigate.directory.directory import ACCOUNT_TYPES
from communigate.formats.cgdata import dumps
from communigate.interfaces import IAccount


def qualified(context, name: str) -> str:
    """
    C{name} as a full address: C{*} is the caller, a bare name is in the
    caller's domain.
    """
    if name == "*":
        return context.account
    return name if "@" in name else f"{name}@{context.domain}"


def _domain_argument(context, arguments: ArgumentReader) -> str:
    """
    An optional leading domain name; the caller's domain when absent.
    """
    if arguments.at_end() or arguments.next_is_dictionary():
        return context.domain
    return arguments.string("domain name")


def _only_settings(arguments: ArgumentReader, what: str) -> dict:
    value = arguments.dictionary(what)
    arguments.end()
    return value


class DirectoryCommands:
    """
    The directory command set of the CLI interpreter.
    """

    def __init__(self, directory: Directory, portal) -> None:
        self._directory = directory
        self._portal = portal

    # -- domains -----------------------------------------------------------

    def command_MAINDOMAINNAME(self, context, arguments):
        """MAINDOMAINNAME"""
        arguments.end()
        return self._directory.main_domain()

    def command_LISTDOMAINS(self, context, arguments):
        """LISTDOMAINS"""
        arguments.end()
        return self._directory.list_domains()

    def command_CREATEDOMAIN(self, context, arguments):
        """CREATEDOMAIN domainName [settings]"""
        name = arguments.string("domain name")
        domain_settings = arguments.optional_dictionary("domain settings")
        arguments.end()
        self._directory.create_domain(name, domain_settings)

    def command_DELETEDOMAIN(self, context, arguments):
        """DELETEDOMAIN domainName [FORCE]"""
        name = arguments.string("domain name")
        force = arguments.keyword("FORCE") is not None
        arguments.end()
        self._directory.delete_domain(name, force=force)

    def command_GETDOMAINALIASES(self, context, arguments):
        """GETDOMAINALIASES [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.domain_aliases(domain)

    def command_SETDOMAINALIASES(self, context, arguments):
        """SETDOMAINALIASES domainName newAliases"""
        domain = arguments.string("domain name")
        aliases = arguments.array("domain aliases")
        arguments.end()
        self._directory.set_domain_aliases(domain, aliases)

    def command_GETDOMAINSETTINGS(self, context, arguments):
        """GETDOMAINSETTINGS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.domain_settings(domain)

    def command_GETDOMAINEFFECTIVESETTINGS(self, context, arguments):
        """GETDOMAINEFFECTIVESETTINGS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.domain_effective_settings(domain)

    def command_UPDATEDOMAINSETTINGS(self, context, arguments):
        """UPDATEDOMAINSETTINGS [domainName] newSettings"""
        domain = _domain_argument(context, arguments)
        changes = _only_settings(arguments, "domain settings")
        self._directory.change_domain_settings(domain, changes, replace=False)

    def command_SETDOMAINSETTINGS(self, context, arguments):
        """SETDOMAINSETTINGS [domainName] newSettings"""
        domain = _domain_argument(context, arguments)
        new = _only_settings(arguments, "domain settings")
        self._directory.change_domain_settings(domain, new, replace=True)

    def command_GETDOMAINDEFAULTS(self, context, arguments):
        """GETDOMAINDEFAULTS"""
        arguments.end()
        return self._directory.server_domain_defaults()

    def command_UPDATEDOMAINDEFAULTS(self, context, arguments):
        """UPDATEDOMAINDEFAULTS newSettings"""
        changes = _only_settings(arguments, "domain defaults")
        self._directory.change_server_domain_defaults(changes, replace=False)

    def command_SETDOMAINDEFAULTS(self, context, arguments):
        """SETDOMAINDEFAULTS newSettings"""
        new = _only_settings(arguments, "domain defaults")
        self._directory.change_server_domain_defaults(new, replace=True)

    def command_GETACCOUNTDEFAULTS(self, context, arguments):
        """GETACCOUNTDEFAULTS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.account_defaults(domain)

    def command_UPDATEACCOUNTDEFAULTS(self, context, arguments):
        """UPDATEACCOUNTDEFAULTS [domainName] newSettings"""
        domain = _domain_argument(context, arguments)
        changes = _only_settings(arguments, "account defaults")
        self._directory.change_account_defaults(domain, changes, replace=False)

    def command_SETACCOUNTDEFAULTS(self, context, arguments):
        """SETACCOUNTDEFAULTS [domainName] newSettings"""
        domain = _domain_argument(context, arguments)
        new = _only_settings(arguments, "account defaults")
        self._directory.change_account_defaults(domain, new, replace=True)

    def command_GETSERVERACCOUNTDEFAULTS(self, context, arguments):
        """GETSERVERACCOUNTDEFAULTS"""
        arguments.end()
        return self._directory.server_account_defaults()

    def command_UPDATESERVERACCOUNTDEFAULTS(self, context, arguments):
        """UPDATESERVERACCOUNTDEFAULTS newSettings"""
        changes = _only_settings(arguments, "account defaults")
        self._directory.change_server_account_defaults(changes, replace=False)

    def command_SETSERVERACCOUNTDEFAULTS(self, context, arguments):
        """SETSERVERACCOUNTDEFAULTS newSettings"""
        new = _only_settings(arguments, "account defaults")
        self._directory.change_server_account_defaults(new, replace=True)

    # -- accounts ----------------------------------------------------------

    def _account(self, context, arguments) -> str:
        return qualified(context, arguments.name_or_self("account name"))

    def command_CREATEACCOUNT(self, context, arguments):
        """CREATEACCOUNT accountName [accountType] [settings]"""
        account = qualified(context, arguments.string("account name"))
        account_type = arguments.keyword(*(t.upper() for t in ACCOUNT_TYPES))
        if account_type is None and not (
            arguments.at_end() or arguments.next_is_dictionary()
        ):
            found = arguments.value("account type")
            raise CommandError(
                f"unknown account type {dumps(found)}; use one of "
                + ", ".join(ACCOUNT_TYPES)
            )
        account_settings = arguments.optional_dictionary("account settings")
        arguments.end()
        by_upper = {t.upper(): t for t in ACCOUNT_TYPES}
        self._directory.create_account(
            account,
            account_settings,
            account_type=by_upper[account_type or "MULTIMAILBOX"],
        )

    def command_RENAMEACCOUNT(self, context, arguments):
        """RENAMEACCOUNT oldAccountName INTO newAccountName"""
        old = self._account(context, arguments)
        arguments.expect_keyword("INTO")
        new = self._account(context, arguments)
        arguments.end()
        self._directory.rename_account(old, new)

    def command_DELETEACCOUNT(self, context, arguments):
        """DELETEACCOUNT accountName"""
        account = self._account(context, arguments)
        arguments.end()
        if not context.trusted and self._directory.account_name(account) == context.account:
            raise CommandError("an administrator cannot delete the account it is using")
        self._directory.delete_account(account)

    def command_LISTACCOUNTS(self, context, arguments):
        """LISTACCOUNTS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.list_accounts(domain)

    def command_GETACCOUNTSETTINGS(self, context, arguments):
        """GETACCOUNTSETTINGS accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._directory.account_settings(account)

    def command_GETACCOUNTEFFECTIVESETTINGS(self, context, arguments):
        """GETACCOUNTEFFECTIVESETTINGS accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._directory.account_effective_settings(account)

    def command_UPDATEACCOUNTSETTINGS(self, context, arguments):
        """UPDATEACCOUNTSETTINGS accountName newSettings"""
        account = self._account(context, arguments)
        changes = _only_settings(arguments, "account settings")
        self._directory.change_account_settings(account, changes, replace=False)

    def command_SETACCOUNTSETTINGS(self, context, arguments):
        """SETACCOUNTSETTINGS accountName newSettings"""
        account = self._account(context, arguments)
        new = _only_settings(arguments, "account settings")
        self._directory.change_account_settings(account, new, replace=True)

    def _password(self, arguments) -> str:
        if arguments.keyword("PASSWORD", "TO") is None:
            raise CommandError("expected the keyword PASSWORD")
        password = arguments.string("password")
        arguments.end()
        return password

    def command_SETACCOUNTPASSWORD(self, context, arguments):
        """SETACCOUNTPASSWORD accountName PASSWORD newPassword"""
        account = self._account(context, arguments)
        self._directory.set_password(account, self._password(arguments))

    def command_VERIFYACCOUNTPASSWORD(self, context, arguments):
        """VERIFYACCOUNTPASSWORD accountName PASSWORD password"""
        account = self._directory.account_name(self._account(context, arguments))
        password = self._password(arguments)
        credentials = UsernamePassword(account.encode(), password.encode())

        def accepted(login):
            _interface, _avatar, logout = login
            logout()

        def refused(failure):
            failure.trap(UnauthorizedLogin)
            raise CommandError("incorrect password")

        d = self._portal.login(credentials, None, IAccount)
        return d.addCallbacks(accepted, refused)

    def command_GETACCOUNTALIASES(self, context, arguments):
        """GETACCOUNTALIASES accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._directory.account_aliases(account)

    def command_SETACCOUNTALIASES(self, context, arguments):
        """SETACCOUNTALIASES accountName newAliases"""
        account = self._account(context, arguments)
        aliases = arguments.array("aliases")
        arguments.end()
        self._directory.set_account_aliases(account, aliases)

    def command_GETACCOUNTTELNUMS(self, context, arguments):
        """GETACCOUNTTELNUMS accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._directory.account_telnums(account)

    def command_SETACCOUNTTELNUMS(self, context, arguments):
        """SETACCOUNTTELNUMS accountName newTelnums"""
        account = self._account(context, arguments)
        numbers = arguments.array("telnums")
        arguments.end()
        self._directory.set_account_telnums(account, numbers)

    def command_LISTSERVERTELNUMS(self, context, arguments):
        """LISTSERVERTELNUMS [limit] [FILTER filter]"""
        return self._telnum_listing(self._directory.server_telnums(), arguments)

    def command_LISTDOMAINTELNUMS(self, context, arguments):
        """LISTDOMAINTELNUMS domainName [limit] [FILTER filter]"""
        domain = self._directory.real_domain(arguments.string("domain name"))
        numbers = {
            number: account
            for number, account in self._directory.server_telnums().items()
            if account.endswith("@" + domain)
        }
        return self._telnum_listing(numbers, arguments)

    @staticmethod
    def _telnum_listing(numbers: dict, arguments) -> dict:
        # With a limit, CommuniGate adds the total under the empty key so a
        # client knows the listing was cut.
        limit = None
        filtered = arguments.keyword("FILTER") is not None
        if not filtered and not arguments.at_end():
            limit = arguments.number("limit", minimum=0)
            filtered = arguments.keyword("FILTER") is not None
        pattern = arguments.string("filter") if filtered else ""
        arguments.end()
        chosen = {n: a for n, a in numbers.items() if pattern in n}
        if limit is None:
            return chosen
        result = dict(list(chosen.items())[:limit])
        result[""] = len(chosen)
        return result

    # -- forwarders --------------------------------------------------------

    def command_CREATEFORWARDER(self, context, arguments):
        """CREATEFORWARDER forwarderName TO address"""
        name = self._forwarder(context, arguments)
        arguments.expect_keyword("TO")
        target = arguments.string("forwarding address")
        arguments.end()
        self._directory.create_forwarder(name, target)

    def _forwarder(self, context, arguments) -> str:
        return qualified(context, arguments.string("forwarder name"))

    def command_GETFORWARDER(self, context, arguments):
        """GETFORWARDER forwarderName"""
        name = self._forwarder(context, arguments)
        arguments.end()
        return self._directory.forwarder(name)

    def command_DELETEFORWARDER(self, context, arguments):
        """DELETEFORWARDER forwarderName"""
        name = self._forwarder(context, arguments)
        arguments.end()
        self._directory.delete_forwarder(name)

    def command_LISTFORWARDERS(self, context, arguments):
        """LISTFORWARDERS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.list_forwarders(domain)

    # -- groups ------------------------------------------------------------

    def _group(self, context, arguments) -> str:
        return qualified(context, arguments.string("group name"))

    def command_CREATEGROUP(self, context, arguments):
        """CREATEGROUP groupName [settings]"""
        name = self._group(context, arguments)
        group_settings = arguments.optional_dictionary("group settings")
        arguments.end()
        self._directory.create_group(name, group_settings)

    def command_GETGROUP(self, context, arguments):
        """GETGROUP groupName"""
        name = self._group(context, arguments)
        arguments.end()
        return self._directory.group(name)

    def command_SETGROUP(self, context, arguments):
        """SETGROUP groupName newSettings"""
        name = self._group(context, arguments)
        new = _only_settings(arguments, "group settings")
        self._directory.set_group(name, new)

    def command_DELETEGROUP(self, context, arguments):
        """DELETEGROUP groupName"""
        name = self._group(context, arguments)
        arguments.end()
        self._directory.delete_group(name)

    def command_LISTGROUPS(self, context, arguments):
        """LISTGROUPS [domainName]"""
        domain = _domain_argument(context, arguments)
        arguments.end()
        return self._directory.list_groups(domain)
