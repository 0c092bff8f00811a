"""
How directory objects lie in the store.

Every object is one record of CommuniGate data-format text, so a store dump
reads like CommuniGate's own settings files.  The record kinds:

  server        main-domain, account-defaults, domain-defaults
  domain        name -> {Settings; AccountDefaults; Aliases}
  domain-alias  alias -> domain name
  name          domain/name -> {Kind; Account}: one entry per name in a
                domain, whatever object holds it, so names never collide
  account       domain/name -> {Type; Settings; Aliases; Telnums; SignalRules}
  secrets       domain/name -> the account's derived password secrets, apart
                from the account record that every Signal reads
  forwarder     domain/name -> {Address}
  group         domain/name -> group settings, Members among them
  telnum        number -> user@domain of the owning account
"""

import attrs

from communigate.formats.cgdata import dumps, loads
from communigate.interfaces import IStore

SERVER = "server"
DOMAIN = "domain"
DOMAIN_ALIAS = "domain-alias"
NAME = "name"
ACCOUNT = "account"
FORWARDER = "forwarder"
GROUP = "group"
TELNUM = "telnum"
SECRETS = "secrets"


def object_key(domain: str, local: str) -> str:
    return f"{domain}/{local}"


@attrs.define
class Records:
    """
    Typed reads and writes of directory records over an L{IStore}.
    """

    store: IStore

    def load(self, kind: str, key: str, default=None):
        text = self.store.get(kind, key)
        return default if text is None else loads(text)

    def save(self, kind: str, key: str, value) -> None:
        self.store.put(kind, key, dumps(value))

    def remove(self, kind: str, key: str) -> bool:
        return self.store.delete(kind, key)

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        return [key for key, _ in self.store.scan(kind, prefix)]

    def items(self, kind: str, prefix: str = "") -> list[tuple[str, object]]:
        return [(key, loads(text)) for key, text in self.store.scan(kind, prefix)]

    def names_in(self, kind: str, domain: str) -> list[str]:
        prefix = object_key(domain, "")
        return [key[len(prefix):] for key in self.keys(kind, prefix)]
