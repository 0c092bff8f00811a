"""
Reading a CLI command's arguments, one data-format value at a time.

CLI arguments are words and data-format values on one line
(C{RENAMEACCOUNT a INTO b}, C{CREATEACCOUNT u {Password = x;}}), so each
command reads exactly the shape it expects and a stray word is an error
naming what was expected.
"""

import re

from communigate.formats.cgdata import DataFormatError, parse_prefix, skip_space

_INTEGER = re.compile(r"-?[0-9]+")


class CommandError(Exception):
    """
    The command line is malformed; the message says what is wrong.
    """


class ArgumentReader:
    """
    The arguments of one command line, consumed left to right.
    """

    def __init__(self, line: str, position: int = 0) -> None:
        self._line = line
        self._position = skip_space(line, position)

    def at_end(self) -> bool:
        return self._position >= len(self._line)

    def _peek(self) -> str:
        return self._line[self._position : self._position + 1]

    def value(self, what: str) -> object:
        if self.at_end():
            raise CommandError(f"missing {what}")
        try:
            value, position = parse_prefix(self._line, self._position)
        except DataFormatError as e:
            raise CommandError(f"bad {what}: {e}") from e
        self._position = skip_space(self._line, position)
        return value

    def string(self, what: str) -> str:
        value = self.value(what)
        if not isinstance(value, str):
            raise CommandError(f"{what} must be a string")
        return value

    def name_or_self(self, what: str) -> str:
        """
        A string, or a bare C{*}, CommuniGate's "the account I am logged
        in as", which the data format itself cannot read as a value.
        """
        if self._peek() == "*":
            following = self._line[self._position + 1 : self._position + 2]
            if following in ("", " ", "\t"):
                self._position = skip_space(self._line, self._position + 1)
                return "*"
        return self.string(what)

    def address(self, what: str) -> str:
        """
        An address: a quoted string, or the raw text up to the next space,
        so C{+15553837461}, C{#program} and C{sip:bob@example.net} need no
        quotes although they are not data-format atoms.
        """
        if self._peek() == '"':
            return self.string(what)
        if self.at_end():
            raise CommandError(f"missing {what}")
        end = self._position
        while end < len(self._line) and self._line[end] not in " \t":
            end += 1
        word = self._line[self._position : end]
        self._position = skip_space(self._line, end)
        return word

    def dictionary(self, what: str) -> dict:
        value = self.value(what)
        if not isinstance(value, dict):
            raise CommandError(f"{what} must be a dictionary, like {{Key = value;}}")
        return value

    def array(self, what: str) -> list:
        value = self.value(what)
        if not isinstance(value, list):
            raise CommandError(f"{what} must be an array, like (a, b)")
        return value

    def number(self, what: str, minimum: int | None = None) -> int:
        """
        A number, written as a plain atom (C{10}, C{-1}) or a number
        object (C{#10}); C{#YES}/C{#NO} are flags, not numbers.
        """
        value = self.value(what)
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise CommandError(f"{what} must be a number")
        if minimum is not None and number < minimum:
            raise CommandError(f"{what} must be at least {minimum}, not {number}")
        return number

    def next_is_dictionary(self) -> bool:
        return self._peek() == "{"

    def next_is_array(self) -> bool:
        return self._peek() == "("

    def optional_dictionary(self, what: str) -> dict | None:
        return self.dictionary(what) if self.next_is_dictionary() else None

    def keyword(self, *words: str) -> str | None:
        """
        Consume the next word if it is one of C{words} (any case) and
        return it in upper case; otherwise consume nothing.
        """
        if self.at_end() or self._peek() in '{("[#':
            return None
        try:
            value, position = parse_prefix(self._line, self._position)
        except DataFormatError:
            return None
        if isinstance(value, str) and value.upper() in words:
            self._position = skip_space(self._line, position)
            return value.upper()
        return None

    def expect_keyword(self, word: str) -> None:
        if self.keyword(word) is None:
            raise CommandError(f"expected the keyword {word}")

    def end(self) -> None:
        if not self.at_end():
            raise CommandError(f"unexpected text {self._line[self._position:]!r}")


def split_command(line: str) -> tuple[str, ArgumentReader]:
    """
    The upper-cased command name of C{line} and a reader of the rest.
    """
    text = line.strip()
    end = 0
    while end < len(text) and text[end].isalnum():
        end += 1
    if end == 0:
        raise CommandError("a command line starts with a command name")
    return text[:end].upper(), ArgumentReader(text, end)
