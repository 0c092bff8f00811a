"""
CLI commands over rosters, presence and message-waiting counts.

  ROSTER accountName {what = List | Update | remove | Presence | probe; ...}
  GETACCOUNTPRESENCE accountName
  SETACCOUNTMWI accountName {new = N; old = M; [urgentNew = n; urgentOld = m;]}
  GETACCOUNTMWI accountName

C{ROSTER} and C{GETACCOUNTPRESENCE} are CommuniGate's names [B for the
parameters]; the MWI pair is ours [D] (CommuniGate takes MWI from the
INBOX).  See docs/presence.md for the forms and results.
"""

from __future__ import annotations

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified
from communigate.cli.result import CommandResult
from communigate.presence.mwi import MessageCounts
from communigate.presence.roster import RosterError

_WHATS = ("list", "update", "remove", "presence", "probe")
_MWI_KEYS = {"new": "new", "old": "old", "urgentnew": "urgent_new", "urgentold": "urgent_old"}


def _presence_value(status):
    """C{GETACCOUNTPRESENCE}'s answer: null, a word, or (word, text)."""
    if status is None:
        return CommandResult(data=None)
    word, text = status
    return word if text is None else [word, text]


class PresenceCommands:
    """
    The presence command set of the CLI interpreter.

    @param presence: the L{IPresenceService}, or L{None} in the admin tool
        on a data directory (presence lives in the running server only).
    """

    def __init__(self, directory, roster, presence, message_waiting) -> None:
        self._directory = directory
        self._roster = roster
        self._presence = presence
        self._waiting = message_waiting

    def _account(self, context, arguments) -> str:
        return self._directory.account_name(qualified(context, arguments.string("account name")))

    def _live_presence(self):
        if self._presence is None:
            raise CommandError("presence is known only to the running server; use the CLI of the server")
        return self._presence

    # -- ROSTER ---------------------------------------------------------------

    def command_ROSTER(self, context, arguments):
        """ROSTER accountName {what = List|Update|remove|Presence|probe; peer = address; ...}"""
        account = self._account(context, arguments)
        params = {key.lower(): value for key, value in arguments.dictionary("roster parameters").items()}
        arguments.end()
        what = str(params.get("what", "list")).lower()
        if what not in _WHATS:
            raise CommandError(f"unknown ROSTER what {params.get('what')!r}; use List, Update, remove, Presence or probe")
        try:
            if what == "list":
                return self._roster_list(account)
            peer = params.get("peer")
            if not isinstance(peer, str) or not peer:
                raise CommandError(f"ROSTER {what} needs peer = address")
            return getattr(self, f"_roster_{what}")(account, peer, params)
        except RosterError as error:
            raise CommandError(str(error)) from None
        except ValueError as error:
            raise CommandError(str(error)) from None

    def _roster_list(self, account: str) -> dict:
        result = {}
        for item in self._roster.items(account):
            entry = {"subscription": item.subscription}
            if item.name:
                entry["name"] = item.name
            if item.groups:
                entry["groups"] = list(item.groups)
            if item.ask:
                entry["ask"] = "subscribe"
            result[item.contact] = entry
        for request in self._roster.pending(account):
            entry = result.setdefault(request.contact, {"subscription": "none"})
            entry["request"] = "pending"
            if request.status:
                entry["status"] = request.status
        return result

    def _roster_update(self, account: str, peer: str, params: dict) -> None:
        groups = params.get("groups", params.get("group"))
        if isinstance(groups, str):
            groups = [groups]
        if groups is not None and not isinstance(groups, list):
            raise CommandError("groups must be an array of group names")
        name = params.get("name")
        if name is not None and not isinstance(name, str):
            raise CommandError("name must be a string")
        self._roster.set_item(account, peer, name=name, groups=groups)
        subscription = params.get("subscription")
        if subscription is not None:
            if not isinstance(subscription, str):
                raise CommandError("subscription must be none, to, from or both")
            self._roster.set_subscription(account, peer, subscription.lower())

    def _roster_remove(self, account: str, peer: str, params: dict) -> None:
        self._roster.remove_item(account, peer)

    def _roster_presence(self, account: str, peer: str, params: dict) -> None:
        kind = params.get("type", params.get("data"))
        if not isinstance(kind, str):
            raise CommandError("ROSTER Presence needs type = subscribe, subscribed, unsubscribe or unsubscribed")
        self._roster.exchange(account, peer, kind)

    def _roster_probe(self, account: str, peer: str, params: dict):
        presence = self._live_presence()
        owner = self._directory.resolve_account(peer)
        if owner is None:
            raise CommandError(f"{peer} is not an account of this server; its presence is not known here")
        if not self._roster.is_authorized(owner, account):
            raise CommandError(f"{owner} does not share its presence with {account}")
        return _presence_value(presence.status(owner))

    # -- presence and message waiting ---------------------------------------------

    def command_GETACCOUNTPRESENCE(self, context, arguments):
        """GETACCOUNTPRESENCE accountName"""
        account = self._account(context, arguments)
        arguments.end()
        return _presence_value(self._live_presence().status(account))

    def command_SETACCOUNTMWI(self, context, arguments):
        """SETACCOUNTMWI accountName {new = N; old = M; urgentNew = n; urgentOld = m;}"""
        account = self._account(context, arguments)
        given = arguments.dictionary("message counts")
        arguments.end()
        counts = {}
        for key, value in given.items():
            name = _MWI_KEYS.get(str(key).lower())
            if name is None:
                raise CommandError(f"unknown message count {key!r}; use new, old, urgentNew, urgentOld")
            try:
                counts[name] = int(value)
            except (TypeError, ValueError):
                raise CommandError(f"{key} must be a number, not {value!r}") from None
        try:
            self._waiting.set_counts(account, MessageCounts(**counts))
        except ValueError as error:
            raise CommandError(str(error)) from None

    def command_GETACCOUNTMWI(self, context, arguments):
        """GETACCOUNTMWI accountName"""
        account = self._account(context, arguments)
        arguments.end()
        counts = self._waiting.counts(account)
        return {
            "new": str(counts.new),
            "old": str(counts.old),
            "urgentNew": str(counts.urgent_new),
            "urgentOld": str(counts.urgent_old),
        }
