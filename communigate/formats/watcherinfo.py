"""
RFC 3858 watcher information documents (C{application/watcherinfo+xml},
the body of the RFC 3857 C{presence.winfo} event package): a pure
serializer, and a parser (through L{communigate.formats.safexml}) that
reads back what the serializer writes and what other servers send.

A document is a C{<watcherinfo>} with a C{version} and a C{state}
(C{full}: the whole list; C{partial}: only the watchers that changed),
holding C{<watcher-list>}s, one per watched resource and package, each
holding C{<watcher>}s: the watcher's URI as content, an C{id} unique per
subscription, its C{status} and the C{event} that brought it there.
"""

from __future__ import annotations

import attrs

from communigate.formats.safexml import XMLError, escape_attribute, escape_text, parse as parse_xml

NS = "urn:ietf:params:xml:ns:watcherinfo"
CONTENT_TYPE = "application/watcherinfo+xml"
#: RFC 3858 section 5.4: where a subscription is.
STATUSES = ("pending", "active", "waiting", "terminated")
#: RFC 3858 section 5.4 / RFC 3857 section 3.3: what brought it there.
EVENTS = ("subscribe", "approved", "deactivated", "probation", "rejected", "timeout", "giveup", "noresource")
STATES = ("full", "partial")


class WatcherInfoError(ValueError):
    """Not a usable watcherinfo document; the text says why."""


def _one_of(allowed):
    def check(instance, attribute, value):
        if value not in allowed:
            raise ValueError(f"{attribute.name} must be one of {', '.join(allowed)}, not {value!r}")

    return check


def _text(instance, attribute, value):
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string without surrounding blanks, not {value!r}")


def _count(instance, attribute, value):
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(f"{attribute.name} must be a whole number of seconds, not {value!r}")


@attrs.frozen
class Watcher:
    """
    One subscription to the resource.

    @ivar uri: who watches (C{sip:bob@example.com}, C{xmpp:bob@example.com}).
    @ivar id: names this subscription among the resource's watchers.
    @ivar expiration: seconds until the subscription runs out, if known.
    @ivar duration_subscribed: seconds it has lasted, if known.
    """

    id: str = attrs.field(validator=_text)
    uri: str = attrs.field(validator=_text)
    status: str = attrs.field(validator=_one_of(STATUSES))
    event: str = attrs.field(validator=_one_of(EVENTS))
    display_name: str | None = None
    expiration: int | None = attrs.field(default=None, validator=_count)
    duration_subscribed: int | None = attrs.field(default=None, validator=_count)


@attrs.frozen
class WatcherList:
    """The watchers of one resource in one event package."""

    resource: str = attrs.field(validator=_text)
    package: str = attrs.field(validator=_text)
    watchers: tuple[Watcher, ...] = ()


@attrs.frozen
class WatcherInfo:
    version: int = attrs.field(validator=_count)
    state: str = attrs.field(default="full", validator=_one_of(STATES))
    lists: tuple[WatcherList, ...] = ()


def _attribute(name: str, value) -> str:
    return "" if value is None else f' {name}="{escape_attribute(str(value))}"'


def serialize(info: WatcherInfo) -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<watcherinfo xmlns="{NS}" version="{info.version}" state="{info.state}">',
    ]
    for watcher_list in info.lists:
        parts.append(
            "<watcher-list" + _attribute("resource", watcher_list.resource)
            + _attribute("package", watcher_list.package) + ">"
        )
        for watcher in watcher_list.watchers:
            parts.append(
                "<watcher"
                + _attribute("id", watcher.id)
                + _attribute("status", watcher.status)
                + _attribute("event", watcher.event)
                + _attribute("display-name", watcher.display_name)
                + _attribute("expiration", watcher.expiration)
                + _attribute("duration-subscribed", watcher.duration_subscribed)
                + f">{escape_text(watcher.uri)}</watcher>"
            )
        parts.append("</watcher-list>")
    parts.append("</watcherinfo>\n")
    return "".join(parts).encode("utf-8")


def _seconds(node, name: str) -> int | None:
    value = node.get(name)
    return None if value is None else int(value)


def parse(data: bytes) -> WatcherInfo:
    """
    @raise WatcherInfoError: naming what is wrong.
    """
    try:
        root = parse_xml(data)
    except XMLError as error:
        raise WatcherInfoError(str(error)) from None
    if root.tag != f"{{{NS}}}watcherinfo":
        raise WatcherInfoError("not a watcherinfo document")
    try:
        lists = []
        for list_node in root.findall(f"{{{NS}}}watcher-list"):
            watchers = tuple(
                Watcher(
                    id=node.get("id", ""),
                    uri="".join(node.itertext()).strip(),
                    status=node.get("status", ""),
                    event=node.get("event", ""),
                    display_name=node.get("display-name"),
                    expiration=_seconds(node, "expiration"),
                    duration_subscribed=_seconds(node, "duration-subscribed"),
                )
                for node in list_node.findall(f"{{{NS}}}watcher")
            )
            lists.append(WatcherList(list_node.get("resource", ""), list_node.get("package", ""), watchers))
        return WatcherInfo(int(root.get("version", "")), root.get("state", ""), tuple(lists))
    except ValueError as error:
        raise WatcherInfoError(f"bad watcherinfo value: {error}") from None
