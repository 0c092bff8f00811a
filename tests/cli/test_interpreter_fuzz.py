"""
Whatever line arrives, the interpreter answers with a result: a refusal
with a message, never an exception and never an internal error.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.storage import MemoryStore

CORE = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), Clock())
create_initial_objects(CORE.directory, "example.com")
POSTMASTER = CommandContext.for_account("postmaster@example.com")
COMMANDS = CORE.interpreter.command_names()

argument_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60
) | st.sampled_from(['{a=b;}', '(x, "y")', "#5", "INTO", "TO", "PASSWORD", "{", ")", '"', "*"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(COMMANDS), st.lists(argument_text, max_size=4))
def test_any_arguments_to_any_command_get_a_result_not_an_internal_error(command, words):
    result = CORE.interpreter.run(POSTMASTER, " ".join([command, *words]))
    assert result.error is None or "internal error" not in result.error


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_line_gets_a_result(line):
    result = CORE.interpreter.run(POSTMASTER, line)
    assert result.error is None or "internal error" not in result.error
