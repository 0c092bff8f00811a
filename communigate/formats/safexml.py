"""
XML parsing for bodies that come from the network (PIDF, dialog-info),
refusing what makes XML dangerous: a document type declaration, and so
every entity declaration (the "billion laughs" and external entities
never get a chance to expand).  Also bounded in size, depth and element
count.  Pure: bytes in, an L{xml.etree.ElementTree.Element} out.

Names come back in ElementTree's C{{namespace}local} form.
"""

from __future__ import annotations

import xml.parsers.expat as expat
from xml.etree.ElementTree import Element, TreeBuilder

MAX_SIZE = 65536
MAX_DEPTH = 32
MAX_ELEMENTS = 2000


class XMLError(ValueError):
    """The body is not well-formed XML, or breaks a bound; the text says how."""


class UnsafeXML(XMLError):
    """The body declares a DTD or entities, which are never processed."""


def _qname(name: str) -> str:
    return "{" + name if "}" in name else name


def parse(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH,
          max_elements: int = MAX_ELEMENTS) -> Element:
    """
    The root element of C{data}.

    @raise UnsafeXML: a DTD or an entity declaration.
    @raise XMLError: anything else wrong with it.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"XML to parse is bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise XMLError(f"XML body over {max_size} bytes")
    builder = TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    depth = 0
    count = 0

    def refuse(*_args):
        raise UnsafeXML("XML with a DTD or entity declarations is not accepted")

    def start(name, attributes):
        nonlocal depth, count
        depth += 1
        count += 1
        if depth > max_depth:
            raise XMLError(f"XML nested deeper than {max_depth} elements")
        if count > max_elements:
            raise XMLError(f"XML with more than {max_elements} elements")
        builder.start(_qname(name), {_qname(key): value for key, value in attributes.items()})

    def end(name):
        nonlocal depth
        depth -= 1
        builder.end(_qname(name))

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise XMLError(f"malformed XML: {expat.errors.messages.get(error.code, error)}") from None
    return builder.close()


def _valid(char: str) -> bool:
    code = ord(char)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def clean(text: str) -> str:
    """C{text} without the characters XML 1.0 cannot carry."""
    return text if all(_valid(c) for c in text) else "".join(c for c in text if _valid(c))


def escape_text(text: str) -> str:
    """Element content, exactly as parsed back (CR kept as a reference)."""
    return (
        clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attribute(text: str) -> str:
    """An attribute value in double quotes, exactly as parsed back."""
    return (
        escape_text(text).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
    )
