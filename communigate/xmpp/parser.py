"""
The XML stream parser of an XMPP connection, sans-IO: bytes in, events out.

An XMPP stream is one XML document whose root element is the stream and
whose children are the stanzas (RFC 6120 section 4).  L{StreamParser}
feeds the bytes of one connection to expat and returns what completed:
L{StreamOpened} for the stream header, L{ElementReceived} for each
first-level element (a stanza, or a negotiation element such as
C{<starttls/>} or C{<auth/>}) as a L{twisted.words.xish.domish.Element},
and L{StreamClosed} for the closing tag.

Everything the network may abuse is refused with a L{StreamFault} naming
the stream error condition to send:

  - RFC 6120 section 11.1 restricts the XML of a stream: no comments, no
    processing instructions, no document type declaration (so no internal
    subset and no entity declarations), no references to entities other
    than the five predefined ones.  A C{<!DOCTYPE>} or an C{<!ENTITY>} is
    refused the moment expat reports it, before any entity is defined, so
    nothing is ever expanded (the "billion laughs" document stops at its
    first line): C{restricted-xml}.
  - Anything expat cannot parse, or XML in another encoding than UTF-8:
    C{not-well-formed}; an undeclared namespace prefix:
    C{bad-namespace-prefix}.
  - A stanza larger than C{max_stanza_size} bytes, or bytes piling up
    without completing one (an endless start tag, a stream header that
    never ends): C{policy-violation}.  Elements nested deeper than
    L{MAX_DEPTH}: also C{policy-violation}, because everything that walks
    an element (serialising an error reply, copying it) recurses.

After a fault the parser is spent: the connection is to be closed.  A
stream restart (after STARTTLS and after SASL) uses a new parser.
"""

from __future__ import annotations

import pyexpat

import attrs
from twisted.words.xish import domish

#: How deep elements may nest inside a stanza (the stanza itself is 1).
MAX_DEPTH = 64

#: The default stanza size limit (the XMPP setting MaxStanzaSize).
DEFAULT_MAX_STANZA_SIZE = 65536


class StreamFault(Exception):
    """
    The peer sent something that ends the stream.

    @ivar condition: the RFC 6120 section 4.9.3 stream error condition.
    @ivar text: what was wrong, for the peer and the log.
    """

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


@attrs.frozen
class StreamOpened:
    """
    The stream header.

    @ivar namespace: the root element's namespace (L{NS_STREAMS} for XMPP).
    @ivar name: the root element's local name (C{stream}).
    @ivar content_namespace: the default namespace declared on it
        (C{jabber:client} for a client stream), or C{""}.
    @ivar attributes: its attributes, C{xml:lang} under that name.
    """

    namespace: str
    name: str
    content_namespace: str
    attributes: dict


@attrs.frozen
class ElementReceived:
    """
    A complete first-level element of the stream.
    """

    element: domish.Element


@attrs.frozen
class StreamClosed:
    """
    The peer closed its stream (C{</stream:stream>}).
    """


_XML_LANG = "http://www.w3.org/XML/1998/namespace lang"


def _split(name: str) -> tuple[str, str]:
    """
    Expat's C{"uri local"} form of a name as C{(uri, local)}.
    """
    uri, _, local = name.rpartition(" ")
    return uri, local


class StreamParser:
    """
    Parses one XML stream (up to the next restart).

    @param max_stanza_size: the most bytes one stanza may take, also the
        most that may arrive without completing a first-level element.
    """

    def __init__(self, max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE) -> None:
        self.max_stanza_size = max_stanza_size
        self._expat = pyexpat.ParserCreate("UTF-8", " ")
        expat = self._expat
        expat.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        # Newer expat holds back a large token until more data arrives;
        # a stream must see each element as soon as it is complete.
        if hasattr(expat, "SetReparseDeferralEnabled"):
            expat.SetReparseDeferralEnabled(False)
        expat.StartElementHandler = self._start
        expat.EndElementHandler = self._end
        expat.CharacterDataHandler = self._text
        expat.StartNamespaceDeclHandler = self._namespace
        expat.EndNamespaceDeclHandler = self._namespace_end
        expat.StartDoctypeDeclHandler = self._doctype
        expat.EntityDeclHandler = self._entity
        expat.UnparsedEntityDeclHandler = self._entity
        expat.ExternalEntityRefHandler = self._external_entity
        expat.CommentHandler = self._comment
        expat.ProcessingInstructionHandler = self._processing_instruction
        self._events: list = []
        self._opened = False
        self._closed = False
        self._failed: StreamFault | None = None
        self._current: domish.Element | None = None
        self._depth = 0
        self._defaults = [""]
        self._prefixes: dict[str, str] = {}
        # Bytes handed to expat in all, and where the last first-level
        # element (or the header, or whitespace between stanzas) ended.
        self._fed = 0
        self._boundary = 0
        self._stanza_start = 0

    @property
    def opened(self) -> bool:
        """
        Whether the stream header has been received.
        """
        return self._opened

    def feed(self, data: bytes) -> list:
        """
        Parse C{data}; return the events it completed, in order.

        @raise StreamFault: the stream must end with the fault's condition.
            Events completed before the fault are lost with it: nothing
            after a bad byte is acted on, and nothing before it needs to be
            once the stream ends.
        """
        if self._failed is not None:
            raise self._failed
        if self._closed:
            return []
        self._fed += len(data)
        try:
            self._expat.Parse(data, False)
        except StreamFault as fault:
            self._failed = fault
        except pyexpat.ExpatError as e:
            self._failed = self._expat_fault(e)
        except RecursionError:  # pragma: no cover - MAX_DEPTH stops it first
            self._failed = StreamFault("policy-violation", "elements nested too deep")
        if self._failed is None and self._fed - self._boundary > self.max_stanza_size:
            what = "stanza" if self._current is not None else "data without a complete element"
            self._failed = StreamFault(
                "policy-violation", f"{what} larger than {self.max_stanza_size} bytes"
            )
        if self._failed is not None:
            self._events = []
            raise self._failed
        events, self._events = self._events, []
        return events

    def _expat_fault(self, error: pyexpat.ExpatError) -> StreamFault:
        message = pyexpat.ErrorString(error.code)
        if error.code == pyexpat.errors.codes[pyexpat.errors.XML_ERROR_UNBOUND_PREFIX]:
            return StreamFault("bad-namespace-prefix", message)
        return StreamFault("not-well-formed", f"{message} at line {error.lineno}, column {error.offset}")

    # -- restricted XML (RFC 6120 section 11.1) ------------------------------

    def _doctype(self, *args) -> None:
        raise StreamFault("restricted-xml", "a document type declaration is not allowed in XMPP")

    def _entity(self, *args) -> None:
        raise StreamFault("restricted-xml", "entity declarations are not allowed in XMPP")

    def _external_entity(self, *args) -> int:
        raise StreamFault("restricted-xml", "external entities are not allowed in XMPP")

    def _comment(self, data) -> None:
        raise StreamFault("restricted-xml", "comments are not allowed in XMPP")

    def _processing_instruction(self, target, data) -> None:
        raise StreamFault("restricted-xml", "processing instructions are not allowed in XMPP")

    # -- the document ----------------------------------------------------------

    def _namespace(self, prefix, uri) -> None:
        if prefix is None:
            self._defaults.append(uri or "")
        else:
            self._prefixes[prefix] = uri

    def _namespace_end(self, prefix) -> None:
        if prefix is None:
            self._defaults.pop()

    def _attributes(self, attributes: dict) -> dict:
        result = {}
        for name, value in attributes.items():
            if " " in name:
                result[_split(name)] = value
            else:
                result[name] = value
        return result

    def _start(self, name: str, attributes: dict) -> None:
        uri, local = _split(name)
        if not self._opened:
            self._opened = True
            attrs_ = {("xml:lang" if key == _XML_LANG else key): value for key, value in attributes.items()}
            self._events.append(StreamOpened(uri, local, self._defaults[-1], attrs_))
            self._prefixes = {}
            # The header is complete: whatever arrived with it counts from here.
            self._boundary = self._fed
            return
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise StreamFault("policy-violation", f"elements nested more than {MAX_DEPTH} deep")
        element = domish.Element((uri, local), self._defaults[-1], self._attributes(attributes), self._prefixes)
        self._prefixes = {}
        if self._current is None:
            self._stanza_start = self._expat.CurrentByteIndex
        else:
            self._current.addChild(element)
        self._current = element
        self._check_size()

    def _end(self, name: str) -> None:
        if self._depth == 0:
            self._closed = True
            self._events.append(StreamClosed())
            return
        self._depth -= 1
        element = self._current
        self._check_size()
        if self._depth == 0:
            self._current = None
            self._boundary = self._expat.CurrentByteIndex
            self._events.append(ElementReceived(element))
        else:
            self._current = element.parent

    def _text(self, data: str) -> None:
        if self._current is None:
            # Whitespace between stanzas (keep-alives); anything else at
            # this level is ignored as RFC 6120 allows for whitespace only.
            self._boundary = self._expat.CurrentByteIndex
            return
        self._current.addContent(data)
        self._check_size()

    def _check_size(self) -> None:
        if self._expat.CurrentByteIndex - self._stanza_start > self.max_stanza_size:
            raise StreamFault("policy-violation", f"stanza larger than {self.max_stanza_size} bytes")
