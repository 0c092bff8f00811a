"""
The CLI commands of Signal Rules at the account, domain and server levels.

A rule set is checked whole before it is stored; a rule that does not parse
leaves the stored set as it was.
"""

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified
from communigate.signal.rules import (
    RulesError,
    delete_rule,
    parse_rules,
    rules_as_data,
    update_rule,
)


class SignalRulesCommands:
    """
    C{GET/SET…SIGNALRULES} and C{UPDATE…SIGNALRULE} for accounts, domains
    and the server.
    """

    def __init__(self, directory) -> None:
        self._directory = directory

    def _store(self, owner, rules) -> None:
        self._directory.set_signal_rules(owner, rules_as_data(rules))

    def _replace(self, owner, arguments) -> None:
        data = arguments.array("Signal Rules")
        arguments.end()
        try:
            rules = parse_rules(data)
        except RulesError as e:
            raise CommandError(f"Signal Rules not changed: {e}") from e
        self._store(owner, rules)

    def _update(self, owner, arguments) -> None:
        if arguments.keyword("DELETE"):
            name = arguments.string("rule name")
            arguments.end()

            def change(current):
                return delete_rule(current, name)
        else:
            data = arguments.array("rule")
            arguments.end()

            def change(current):
                return update_rule(current, data)

        # Read and write in one transaction, so that a change made at the
        # same time by another process (the admin tool) is not lost.
        with self._directory.transaction():
            current = parse_rules(self._directory.signal_rules(owner))
            try:
                rules = change(current)
            except RulesError as e:
                raise CommandError(f"Signal Rules not changed: {e}") from e
            self._store(owner, rules)

    def _account(self, context, arguments) -> str:
        return self._directory.account_name(
            qualified(context, arguments.name_or_self("account name"))
        )

    def _domain(self, context, arguments) -> str:
        return self._directory.real_domain(arguments.string("domain name"))

    def command_GETACCOUNTSIGNALRULES(self, context, arguments):
        """GETACCOUNTSIGNALRULES accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return self._directory.signal_rules(account)

    def command_SETACCOUNTSIGNALRULES(self, context, arguments):
        """SETACCOUNTSIGNALRULES accountName newRules"""
        self._replace(self._account(context, arguments), arguments)

    def command_UPDATEACCOUNTSIGNALRULE(self, context, arguments):
        """UPDATEACCOUNTSIGNALRULE accountName (rule | DELETE ruleName)"""
        self._update(self._account(context, arguments), arguments)

    def command_GETDOMAINSIGNALRULES(self, context, arguments):
        """GETDOMAINSIGNALRULES domainName"""
        domain = self._domain(context, arguments)
        arguments.end()
        return self._directory.signal_rules(domain)

    def command_SETDOMAINSIGNALRULES(self, context, arguments):
        """SETDOMAINSIGNALRULES domainName newRules"""
        self._replace(self._domain(context, arguments), arguments)

    def command_UPDATEDOMAINSIGNALRULE(self, context, arguments):
        """UPDATEDOMAINSIGNALRULE domainName (rule | DELETE ruleName)"""
        self._update(self._domain(context, arguments), arguments)

    def command_GETSERVERSIGNALRULES(self, context, arguments):
        """GETSERVERSIGNALRULES"""
        arguments.end()
        return self._directory.signal_rules(None)

    def command_SETSERVERSIGNALRULES(self, context, arguments):
        """SETSERVERSIGNALRULES newRules"""
        self._replace(None, arguments)

    def command_UPDATESERVERSIGNALRULE(self, context, arguments):
        """UPDATESERVERSIGNALRULE (rule | DELETE ruleName)"""
        self._update(None, arguments)
