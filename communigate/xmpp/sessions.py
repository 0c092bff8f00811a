"""
The registry of bound XMPP resources (L{IXMPPSessions}).

Each account (bare JID) has its resources; each resource is an
L{IXMPPSession}.  This is the seam the rest of the XMPP module builds on:
presence broadcast and message delivery look resources up here, the Signal
bridge watches bindings come and go through L{IXMPPSessionObserver}, and
the CLI lists and kills sessions here.

The registry decides the resource policy and nothing else: it holds no
sockets and no timers, so it is tested without a reactor.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from communigate.interfaces import IXMPPSessions

#: The default for the MaxResources XMPP setting.
DEFAULT_MAX_RESOURCES = 10


class ResourceLimitReached(Exception):
    """
    The account already has its maximum of resources bound.
    """


def generated_resource() -> str:
    """
    A resource name for a client that did not ask for one.
    """
    return "cg-" + os.urandom(6).hex()


@implementer(IXMPPSessions)
class SessionRegistry:
    """
    Bound resources by account, in memory.

    @param max_resources: called with an account name, returns how many
        resources it may bind (the XMPP setting, read when a bind asks, so
        a change is in force at once).
    """

    log = Logger()

    def __init__(self, max_resources: Callable[[str], int] = lambda account: DEFAULT_MAX_RESOURCES) -> None:
        self._max_resources = max_resources
        # account -> resource -> session, in binding order.
        self._accounts: dict[str, dict[str, object]] = {}
        self._observers: list = []

    def __len__(self) -> int:
        return sum(len(resources) for resources in self._accounts.values())

    def add_observer(self, observer) -> None:
        self._observers.append(observer)

    def _tell(self, event: str, session) -> None:
        for observer in list(self._observers):
            try:
                getattr(observer, event)(session)
            except Exception:
                self.log.failure("XMPP session observer {observer!r} failed on {event}", observer=observer, event=event)

    def bind(self, session, account: str, resource: str | None) -> JID:
        resources = self._accounts.setdefault(account, {})
        if resource is None:
            resource = generated_resource()
            while resource in resources:
                resource = generated_resource()
        replaced = resources.get(resource)
        if replaced is None and len(resources) >= self._max_resources(account):
            if not resources:
                del self._accounts[account]
            raise ResourceLimitReached(f"{account} has {len(resources)} resources bound, the most allowed")
        local, _, domain = account.partition("@")
        full = JID(tuple=(local, domain, resource))
        if replaced is not None:
            del resources[resource]
            self.log.info("XMPP resource {jid} replaced by a new login", jid=full.full())
            replaced.close("conflict", "replaced by a new session with the same resource")
            self._tell("session_unbound", replaced)
        resources[resource] = session
        session.jid = full
        self._tell("session_bound", session)
        return full

    def unbind(self, session) -> None:
        full = getattr(session, "jid", None)
        if full is None:
            return
        account = full.userhost()
        resources = self._accounts.get(account)
        if resources is None or resources.get(full.resource) is not session:
            return
        del resources[full.resource]
        if not resources:
            del self._accounts[account]
        self._tell("session_unbound", session)

    def lookup(self, full_jid):
        full = full_jid if isinstance(full_jid, JID) else JID(full_jid)
        resources = self._accounts.get(full.userhost())
        if resources is None or full.resource is None:
            return None
        return resources.get(full.resource)

    def resource(self, account: str, resource: str):
        """
        The session of C{account} (canonical name) bound to C{resource}, or
        L{None}: L{lookup} without preparing a JID.
        """
        return self._accounts.get(account, {}).get(resource)

    def resources(self, account: str) -> list:
        return list(self._accounts.get(account, {}).values())

    def available_resources(self, account: str) -> list:
        available = [s for s in self.resources(account) if s.available and s.priority >= 0]
        return sorted(available, key=lambda session: -session.priority)

    def all_sessions(self) -> list:
        found = [session for resources in self._accounts.values() for session in resources.values()]
        return sorted(found, key=lambda session: session.started)

    def replace(self, old, new) -> None:
        """
        Put C{new} in the place of bound session C{old} under the same full
        JID, without telling the observers: the resource goes on (XEP-0198
        resumption moves a session to a new stream).
        """
        full = old.jid
        resources = self._accounts.get(full.userhost())
        if resources is None or resources.get(full.resource) is not old:
            raise KeyError(f"{full.full()} is not bound to that session")
        resources[full.resource] = new
        new.jid = full

    def set_presence(self, session, available: bool, priority: int) -> None:
        if (session.available, session.priority) == (available, priority):
            return
        session.available = available
        session.priority = priority
        if self.lookup(session.jid) is session:
            self._tell("presence_changed", session)
