"""
The CLI command language: one interpreter behind every front end.

The CLI/PWD protocol, the admin tool and the web admin hand it lines and
show the L{CommandResult}s it gives back.  Commands live in command sets,
objects whose C{command_NAME} methods implement C{NAME}; later components
add their sets with L{Interpreter.add_commands}, so the language grows with
the server, and C{LISTCLICOMMANDS} always tells the truth.
"""

from prometheus_client import CollectorRegistry, Counter
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from communigate.cli.arguments import ArgumentReader, CommandError, split_command
from communigate.cli.result import NO_DATA, CommandResult
from communigate.directory.errors import DirectoryError
from communigate.interfaces import ICommandContext, ICommandInterpreter

PREFIX = "command_"


def _as_result(value: object) -> CommandResult:
    if isinstance(value, CommandResult):
        return value
    return CommandResult(data=NO_DATA if value is None else value)


def _user_error(failure) -> CommandResult:
    failure.trap(CommandError, DirectoryError)
    return CommandResult.failed(str(failure.value))


@implementer(ICommandInterpreter)
class Interpreter:
    """
    Dispatches command lines to command sets, with an access check.

    @param is_administrator: a callable taking an L{ICommandContext} that
        says whether it may run commands; a refused context gets a
        C{501} naming the reason.
    """

    log = Logger()

    def __init__(self, is_administrator, registry: CollectorRegistry | None = None):
        self._is_administrator = is_administrator
        self._commands: dict[str, object] = {}
        self._counter = Counter(
            "communigate_commands",
            "Commands of the CLI language run by any front end, by command and outcome",
            ["command", "outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def add_commands(self, command_set: object) -> None:
        """
        Add every C{command_NAME} method of C{command_set}; a name already
        taken is a programming error.
        """
        for attribute in dir(command_set):
            if attribute.startswith(PREFIX):
                name = attribute[len(PREFIX):].upper()
                if name in self._commands:
                    raise ValueError(f"CLI command {name} is defined twice")
                self._commands[name] = getattr(command_set, attribute)

    def command_names(self) -> list[str]:
        return sorted(self._commands)

    def usage(self, name: str) -> str:
        """
        The one-line synopsis of command C{name} (its docstring's first line).
        """
        doc = self._commands[name].__doc__ or name
        return doc.strip().splitlines()[0]

    def execute(self, context: ICommandContext, line: str) -> defer.Deferred:
        name = "unknown"
        try:
            name, arguments = split_command(line)
            method = self._commands.get(name)
            if method is None:
                name = "unknown"
                raise CommandError(
                    f"unknown command {line.split(None, 1)[0][:64]!r}; "
                    f"LISTCLICOMMANDS lists the commands"
                )
            if not self._is_administrator(context):
                raise CommandError(
                    f"access denied: {context.account} is not a server administrator"
                )
            d = defer.maybeDeferred(method, context, arguments)
        except Exception:
            # A CommandError becomes a 501 below; anything else (the access
            # check could not read the store) an internal error, but
            # always in the Deferred, never raised at the front end.
            d = defer.fail()
        d.addCallback(_as_result)
        d.addErrback(_user_error)
        d.addErrback(self._internal_error, line)
        d.addCallback(self._count, name)
        return d

    def run(self, context: ICommandContext, line: str) -> CommandResult:
        """
        Run a command whose work is synchronous, as the directory commands
        are, and return its result directly.
        """
        results = []
        self.execute(context, line).addCallback(results.append)
        if not results:
            raise RuntimeError(f"command {line!r} did not finish synchronously")
        return results[0]

    def _internal_error(self, failure, line: str) -> CommandResult:
        self.log.failure("CLI command {line!r} failed", failure, line=line[:200])
        return CommandResult.failed("internal error; the server log has the details")

    def _count(self, result: CommandResult, name: str) -> CommandResult:
        self._counter.labels(name, "ok" if result.ok else "error").inc()
        return result


class BuiltinCommands:
    """
    Commands about the command language itself.
    """

    def __init__(self, interpreter: Interpreter) -> None:
        self._interpreter = interpreter

    def command_LISTCLICOMMANDS(self, context, arguments: ArgumentReader):
        """LISTCLICOMMANDS"""
        arguments.end()
        return self._interpreter.command_names()

    def command_NOOP(self, context, arguments: ArgumentReader):
        """NOOP"""
        arguments.end()
