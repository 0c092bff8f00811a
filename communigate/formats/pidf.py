"""
PIDF presence documents (RFC 3863) with the RFC 4479 person element and
RFC 4480 (RPID) activities: a pure parser and serializer, and the mapping
to and from L{communigate.presence.state.PresenceState}.

Parsing goes through L{communigate.formats.safexml} (no DTD, no entities,
bounded).  Unknown elements and attributes are ignored, as PIDF's
extensibility asks; what is modelled must be right (the root is PIDF's
C{presence} with an C{entity}; C{basic} is C{open} or C{closed}) or
L{PIDFError} says what is wrong.

Mapping to a state (L{state_of}):

  - available when some tuple's C{basic} is C{open} (a document without
    any C{basic} but with a person element counts as available);
  - the first activity with a meaning gives the show value: C{busy},
    C{on-the-phone}, C{meeting}, C{appointment} ... are C{dnd}; C{away},
    C{meal}, C{lunch}, C{travel} ... C{away}; C{vacation}, C{holiday},
    C{sleeping}, C{permanent-absence} C{xa}; others (C{working},
    C{unknown} ...) leave it plain available; the activity is kept;
  - the status text is the first note: the person's, then the tuples',
    then the document's.

From a state (L{document_for}): one tuple (C{basic} open/closed, the
entity as contact, the status as note) and one person with the activity
(the one published, or C{busy} for dnd, C{away} for away and xa) and the
note.  C{chat} and C{xa} have no RPID word of their own: a SIP watcher
sees them as available and away.
"""

from __future__ import annotations

import hashlib

import attrs

from communigate.formats.safexml import XMLError, escape_attribute, escape_text, parse as parse_xml
from communigate.presence.state import PresenceState

PIDF = "urn:ietf:params:xml:ns:pidf"
DATA_MODEL = "urn:ietf:params:xml:ns:pidf:data-model"
RPID = "urn:ietf:params:xml:ns:pidf:rpid"
CONTENT_TYPE = "application/pidf+xml"

MAX_TUPLES = 32
MAX_PERSONS = 8
MAX_NOTES = 8
MAX_ACTIVITIES = 16
MAX_TEXT = 1024

#: RFC 4480 activities and the XMPP show value each means.
ACTIVITY_SHOWS = {
    "appointment": "dnd", "busy": "dnd", "meeting": "dnd", "on-the-phone": "dnd",
    "performance": "dnd", "presentation": "dnd", "steering": "dnd", "worship": "dnd",
    "away": "away", "breakfast": "away", "dinner": "away", "in-transit": "away",
    "lunch": "away", "meal": "away", "shopping": "away", "travel": "away",
    "holiday": "xa", "permanent-absence": "xa", "sleeping": "xa", "vacation": "xa",
}  # fmt: skip
#: Every RFC 4480 activity name.
ACTIVITIES = frozenset(ACTIVITY_SHOWS) | {
    "looking-for-work", "playing", "spectator", "tv", "working", "unknown", "other",
}
_DEFAULT_ACTIVITY = {"dnd": "busy", "away": "away", "xa": "away"}


class PIDFError(ValueError):
    """Not a usable PIDF document; the text says why (fit for a 400)."""


@attrs.frozen
class Tuple:
    id: str
    basic: str | None = None
    contact: str | None = None
    notes: tuple[str, ...] = ()
    activities: tuple[str, ...] = ()


@attrs.frozen
class Person:
    id: str
    activities: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@attrs.frozen
class PresenceDocument:
    entity: str
    tuples: tuple[Tuple, ...] = ()
    notes: tuple[str, ...] = ()
    persons: tuple[Person, ...] = ()


# -- parsing -----------------------------------------------------------------------


def _text(element) -> str:
    return "".join(element.itertext()).strip()[:MAX_TEXT]


def _notes(parent, tag: str) -> tuple[str, ...]:
    notes = tuple(note for note in (_text(child) for child in parent if child.tag == tag) if note)
    if len(notes) > MAX_NOTES:
        raise PIDFError(f"more than {MAX_NOTES} notes in one element")
    return notes


def _activities(parent) -> tuple[str, ...]:
    found = []
    for activities in parent.iter(f"{{{RPID}}}activities"):
        for child in activities:
            if child.tag.startswith(f"{{{RPID}}}"):
                found.append(child.tag.split("}", 1)[1])
    if len(found) > MAX_ACTIVITIES:
        raise PIDFError(f"more than {MAX_ACTIVITIES} activities")
    return tuple(found)


def _tuple(element) -> Tuple:
    basic = None
    status = element.find(f"{{{PIDF}}}status")
    if status is not None:
        node = status.find(f"{{{PIDF}}}basic")
        if node is not None:
            basic = _text(node).lower()
            if basic not in ("open", "closed"):
                raise PIDFError(f"basic status must be open or closed, not {basic[:20]!r}")
    contact = element.find(f"{{{PIDF}}}contact")
    return Tuple(
        id=element.get("id", ""),
        basic=basic,
        contact=None if contact is None else (_text(contact) or None),
        notes=_notes(element, f"{{{PIDF}}}note"),
        activities=_activities(element),
    )


def parse(data: bytes) -> PresenceDocument:
    """
    The document in C{data}.

    @raise PIDFError: naming what is wrong (unsafe XML included).
    """
    try:
        root = parse_xml(data)
    except XMLError as error:
        raise PIDFError(str(error)) from None
    if root.tag != f"{{{PIDF}}}presence":
        raise PIDFError("not a PIDF document: the root is not urn:ietf:params:xml:ns:pidf presence")
    entity = root.get("entity")
    if not entity:
        raise PIDFError("the PIDF presence element has no entity")
    tuples = tuple(_tuple(child) for child in root if child.tag == f"{{{PIDF}}}tuple")
    persons = tuple(
        Person(child.get("id", ""), _activities(child), _notes(child, f"{{{DATA_MODEL}}}note"))
        for child in root
        if child.tag == f"{{{DATA_MODEL}}}person"
    )
    if len(tuples) > MAX_TUPLES or len(persons) > MAX_PERSONS:
        raise PIDFError(f"more than {MAX_TUPLES} tuples or {MAX_PERSONS} persons")
    return PresenceDocument(entity[:MAX_TEXT], tuples, _notes(root, f"{{{PIDF}}}note"), persons)


# -- serializing ----------------------------------------------------------------------


def _element(tag: str, text: str) -> str:
    return f"<{tag}>{escape_text(text)}</{tag}>"


def _activities_xml(activities) -> str:
    if not activities:
        return ""
    return "<rpid:activities>" + "".join(f"<rpid:{name}/>" for name in activities) + "</rpid:activities>"


def serialize(document: PresenceDocument) -> bytes:
    """
    C{document} as PIDF, UTF-8.  Activity names must be XML names (the
    RFC 4480 ones are).
    """
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<presence xmlns="{PIDF}" xmlns:dm="{DATA_MODEL}" xmlns:rpid="{RPID}"'
        f' entity="{escape_attribute(document.entity)}">',
    ]
    for item in document.tuples:
        parts.append(f'<tuple id="{escape_attribute(item.id)}">')
        parts.append("<status>" + ("" if item.basic is None else _element("basic", item.basic)) + "</status>")
        parts.append(_activities_xml(item.activities))
        if item.contact is not None:
            parts.append(_element("contact", item.contact))
        parts.extend(_element("note", note) for note in item.notes)
        parts.append("</tuple>")
    parts.extend(_element("note", note) for note in document.notes)
    for person in document.persons:
        parts.append(f'<dm:person id="{escape_attribute(person.id)}">')
        parts.append(_activities_xml(person.activities))
        parts.extend(_element("dm:note", note) for note in person.notes)
        parts.append("</dm:person>")
    parts.append("</presence>\n")
    return "".join(parts).encode("utf-8")


# -- states ---------------------------------------------------------------------------


def state_of(document: PresenceDocument) -> PresenceState:
    """
    The L{PresenceState} a document says (see the module docstring).
    """
    open_tuples = [item for item in document.tuples if item.basic == "open"]
    has_basic = any(item.basic is not None for item in document.tuples)
    available = bool(open_tuples) or (not has_basic and bool(document.persons))
    activities = [a for person in document.persons for a in person.activities]
    for item in open_tuples or document.tuples:
        activities.extend(item.activities)
    activity = next((a for a in activities if a in ACTIVITY_SHOWS), None)
    if activity is None:
        activity = next((a for a in activities if a not in ("unknown", "other")), None)
    notes = [note for person in document.persons for note in person.notes]
    notes += [note for item in (open_tuples or document.tuples) for note in item.notes]
    notes += list(document.notes)
    return PresenceState(
        available=available,
        show=ACTIVITY_SHOWS.get(activity) if available else None,
        status=notes[0] if notes else None,
        activity=activity if available else None,
    )


def _stable_id(prefix: str, entity: str) -> str:
    return prefix + hashlib.sha256(entity.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def activity_for(state: PresenceState) -> str | None:
    """The RPID activity a watcher is shown for C{state}, or L{None}."""
    if not state.available:
        return None
    if state.activity in ACTIVITIES and ACTIVITY_SHOWS.get(state.activity) == state.show:
        return state.activity
    return _DEFAULT_ACTIVITY.get(state.show)


def document_for(entity: str, state: PresenceState) -> PresenceDocument:
    """
    The document a SIP watcher of C{entity} is sent for C{state}.
    """
    notes = (state.status,) if state.status else ()
    activity = activity_for(state)
    return PresenceDocument(
        entity=entity,
        tuples=(Tuple(_stable_id("t", entity), "open" if state.available else "closed", entity, notes),),
        persons=(Person(_stable_id("p", entity), (activity,) if activity else (), notes),),
    )
