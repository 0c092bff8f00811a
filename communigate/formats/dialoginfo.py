"""
RFC 4235 dialog-info documents (the C{dialog} event package): a pure
serializer, and a parser for what the serializer writes and what phones
send (through L{communigate.formats.safexml}).
"""

from __future__ import annotations

import attrs

from communigate.formats.safexml import XMLError, escape_attribute, escape_text, parse as parse_xml

NS = "urn:ietf:params:xml:ns:dialog-info"
CONTENT_TYPE = "application/dialog-info+xml"
STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
DIRECTIONS = ("initiator", "recipient")
#: RFC 4235 section 4.1.2: why a dialog ended.
EVENTS = ("cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error", "timeout")


class DialogInfoError(ValueError):
    """Not a usable dialog-info document; the text says why."""


def _one_of(allowed):
    def check(instance, attribute, value):
        if value is not None and value not in allowed:
            raise ValueError(f"{attribute.name} must be one of {', '.join(allowed)}, not {value!r}")

    return check


@attrs.frozen
class Dialog:
    """
    One dialog of the entity: C{local} is the entity's side.
    """

    id: str
    state: str = attrs.field(validator=_one_of(STATES))
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    direction: str | None = attrs.field(default=None, validator=_one_of(DIRECTIONS))
    event: str | None = attrs.field(default=None, validator=_one_of(EVENTS))
    code: int | None = None
    local_identity: str | None = None
    remote_identity: str | None = None


@attrs.frozen
class DialogInfo:
    entity: str
    version: int
    state: str = attrs.field(default="full", validator=_one_of(("full", "partial")))
    dialogs: tuple[Dialog, ...] = ()


def _attribute(name: str, value) -> str:
    return "" if value is None else f' {name}="{escape_attribute(str(value))}"'


def _party(tag: str, identity: str | None) -> str:
    if identity is None:
        return ""
    return f"<{tag}><identity>{escape_text(identity)}</identity></{tag}>"


def serialize(info: DialogInfo) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<dialog-info xmlns="{NS}" version="{info.version}" state="{info.state}"'
        f' entity="{escape_attribute(info.entity)}">',
    ]
    for dialog in info.dialogs:
        parts.append(
            "<dialog"
            + _attribute("id", dialog.id)
            + _attribute("call-id", dialog.call_id)
            + _attribute("local-tag", dialog.local_tag)
            + _attribute("remote-tag", dialog.remote_tag)
            + _attribute("direction", dialog.direction)
            + ">"
        )
        parts.append(
            "<state" + _attribute("event", dialog.event) + _attribute("code", dialog.code) + f">{dialog.state}</state>"
        )
        parts.append(_party("local", dialog.local_identity))
        parts.append(_party("remote", dialog.remote_identity))
        parts.append("</dialog>")
    parts.append("</dialog-info>\n")
    return "".join(parts).encode("utf-8")


def _identity(dialog, tag: str) -> str | None:
    node = dialog.find(f"{{{NS}}}{tag}/{{{NS}}}identity")
    return None if node is None else "".join(node.itertext()).strip()


def parse(data: bytes) -> DialogInfo:
    """
    @raise DialogInfoError: naming what is wrong.
    """
    try:
        root = parse_xml(data)
    except XMLError as error:
        raise DialogInfoError(str(error)) from None
    if root.tag != f"{{{NS}}}dialog-info":
        raise DialogInfoError("not a dialog-info document")
    try:
        dialogs = []
        for node in root.findall(f"{{{NS}}}dialog"):
            state = node.find(f"{{{NS}}}state")
            if state is None:
                raise DialogInfoError("a dialog without a state")
            code = state.get("code")
            dialogs.append(
                Dialog(
                    id=node.get("id", ""),
                    state="".join(state.itertext()).strip(),
                    call_id=node.get("call-id"),
                    local_tag=node.get("local-tag"),
                    remote_tag=node.get("remote-tag"),
                    direction=node.get("direction"),
                    event=state.get("event"),
                    code=None if code is None else int(code),
                    local_identity=_identity(node, "local"),
                    remote_identity=_identity(node, "remote"),
                )
            )
        return DialogInfo(root.get("entity", ""), int(root.get("version", "")), root.get("state", ""), tuple(dialogs))
    except ValueError as error:
        if isinstance(error, DialogInfoError):
            raise
        raise DialogInfoError(f"bad dialog-info value: {error}") from None
