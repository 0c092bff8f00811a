"""
What a CLI command produces, independent of the front end that shows it.

The CLI/PWD protocol writes a result as C{200 OK}, C{201 data} or
C{501 error}; the admin tool prints the data and sets its exit status; the
web admin turns it into a page.  Keeping the result a value lets all three
share one interpreter.
"""

import attrs

NO_DATA = object()


@attrs.frozen
class CommandResult:
    """
    The outcome of one command.

    @ivar data: a data-format value (see L{communigate.formats.cgdata}), or
        L{NO_DATA} for commands that only act.
    @ivar error: the error text for a refused command, else L{None}.
    """

    data: object = NO_DATA
    error: str | None = None

    @classmethod
    def failed(cls, message: str) -> "CommandResult":
        return cls(error=message)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def has_data(self) -> bool:
        return self.data is not NO_DATA

    def render(self) -> str:
        """
        The data as one line of data-format text.
        """
        from communigate.formats.cgdata import dumps

        return dumps(self.data)
