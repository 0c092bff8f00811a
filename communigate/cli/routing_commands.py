"""
The CLI commands of the Router: C{ROUTE}, the Router table and the Router
settings.

C{SETROUTERTABLE} takes the whole table as one string whose lines are
joined with C{\\e} (or C{\\n}), as CommuniGate's CLI does; the table is
checked whole and refused with the line number of the first bad record,
so a typo never half-replaces a working table.
"""

from communigate.cli.arguments import CommandError
from communigate.directory.settings import replaced
from communigate.routing.configuration import RouterConfiguration
from communigate.routing.route import AddressKind, RoutingError
from communigate.routing.table import RouterTableError


class RoutingCommands:
    """
    The routing command set of the CLI interpreter.
    """

    def __init__(self, router, configuration: RouterConfiguration) -> None:
        self._router = router
        self._configuration = configuration

    def command_ROUTE(self, context, arguments):
        """ROUTE address [mail|access|signal]"""
        address = arguments.address("address")
        word = arguments.keyword("MAIL", "ACCESS", "SIGNAL") or "ACCESS"
        arguments.end()

        def failed(failure):
            failure.trap(RoutingError)
            raise CommandError(str(failure.value))

        d = self._router.route(address, AddressKind.named(word), on_behalf_of=context.account)
        return d.addCallbacks(lambda route: route.as_data(), failed)

    def command_GETROUTERTABLE(self, context, arguments):
        """GETROUTERTABLE"""
        arguments.end()
        return self._configuration.table.text

    def command_SETROUTERTABLE(self, context, arguments):
        """SETROUTERTABLE newTable"""
        text = arguments.string("Router table text")
        arguments.end()
        try:
            self._configuration.set_table(text)
        except RouterTableError as e:
            raise CommandError(f"Router table not changed: {e}") from e

    def command_GETROUTERSETTINGS(self, context, arguments):
        """GETROUTERSETTINGS"""
        arguments.end()
        return self._configuration.settings

    def command_SETROUTERSETTINGS(self, context, arguments):
        """SETROUTERSETTINGS newSettings"""
        self._store_settings(replaced(arguments.dictionary("Router settings")), arguments)

    def command_UPDATEROUTERSETTINGS(self, context, arguments):
        """UPDATEROUTERSETTINGS newSettings"""
        changes = arguments.dictionary("Router settings")
        arguments.end()
        try:
            self._configuration.update_settings(changes)
        except ValueError as e:
            raise CommandError(f"Router settings not changed: {e}") from e

    def _store_settings(self, settings: dict, arguments) -> None:
        arguments.end()
        try:
            self._configuration.set_settings(settings)
        except ValueError as e:
            raise CommandError(f"Router settings not changed: {e}") from e
