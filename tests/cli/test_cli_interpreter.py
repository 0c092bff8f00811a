"""
Tests for the interpreter itself, apart from any command set: what a front
end gets back when something other than the command goes wrong.
"""

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from communigate.cli.context import CommandContext
from communigate.cli.interpreter import BuiltinCommands, Interpreter
from communigate.storage import StoreError

CONTEXT = CommandContext.for_account("postmaster@example.com")


def _interpreter(is_administrator):
    interpreter = Interpreter(is_administrator)
    interpreter.add_commands(BuiltinCommands(interpreter))
    return interpreter


def test_failing_access_check_is_an_internal_error_in_the_deferred():
    def is_administrator(context):
        raise StoreError("the store 'x' failed: database is locked")

    interpreter = _interpreter(is_administrator)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        results = []
        interpreter.execute(CONTEXT, "NOOP").addCallback(results.append)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [r.error for r in results] == ["internal error; the server log has the details"]
    assert [e["log_failure"].check(StoreError) for e in events if "log_failure" in e] == [
        StoreError
    ]


def test_refused_access_check_is_a_user_error():
    interpreter = _interpreter(lambda context: False)
    result = interpreter.run(CONTEXT, "NOOP")
    assert result.error == "access denied: postmaster@example.com is not a server administrator"


def test_command_that_does_not_finish_synchronously_cannot_be_run_directly():
    class Slow:
        def command_SLOW(self, context, arguments):
            """SLOW"""
            return defer.Deferred()

    interpreter = _interpreter(lambda context: True)
    interpreter.add_commands(Slow())
    with pytest.raises(RuntimeError, match="did not finish synchronously"):
        interpreter.run(CONTEXT, "SLOW")
