"""
The directory: domains and the objects that live in them.

Every mutating method runs in one store transaction: it checks what it
needs (a free name, a telephone number nobody owns) and writes, or raises a
L{DirectoryError} and leaves the store as it was.  Reads go to the store
each time, so a change made by the admin tool in another process is seen at
once.
"""

import contextlib

from twisted.logger import Logger
from zope.interface import implementer

from communigate.auth.passwords import PasswordSecrets, derive_secrets
from communigate.directory import names, settings
from communigate.directory.errors import (
    DirectoryError,
    InvalidName,
    InvalidSettings,
    NameInUse,
    ObjectInUse,
    UnknownObject,
)
from communigate.directory.records import (
    ACCOUNT,
    DOMAIN,
    DOMAIN_ALIAS,
    FORWARDER,
    GROUP,
    NAME,
    SECRETS,
    SERVER,
    TELNUM,
    Records,
    object_key,
)
from communigate.interfaces import IDirectory, IStore

PASSWORD = "Password"
ACCOUNT_TYPES = (
    "MultiMailbox",
    "TextMailbox",
    "MailDirMailbox",
    "SlicedMailbox",
    "AGrade",
    "BGrade",
    "CGrade",
)
_KIND_WORDS = {
    "account": "an account",
    "alias": "an account alias",
    "forwarder": "a forwarder",
    "group": "a group",
}


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidSettings(f"{what} must be an array of strings, like (a, b)")
    return value


class _Raised:
    """
    A refusal kept in the read cache in place of a value: raised afresh as
    a new exception each time, so no traceback piles up on a shared one.
    """

    __slots__ = ("kind", "args")

    def __init__(self, error: Exception) -> None:
        self.kind = type(error)
        self.args = error.args


def _caught(compute, *args):
    try:
        return compute(*args)
    except (DirectoryError, ValueError) as error:
        return _Raised(error)


def _raising(value):
    if isinstance(value, _Raised):
        raise value.kind(*value.args)
    return value


@implementer(IDirectory)
class Directory:
    """
    The L{IDirectory} over an L{IStore}.

    @param derive: derives password secrets; injected so that tests and
        bulk imports can choose the cost.
    @param recheck_after: how stale, in seconds, the read cache may be
        about changes committed by another process (the admin tool on the
        same data directory); L{Records} explains.  Changes made through
        this object are seen at once.
    """

    log = Logger()

    def __init__(self, store: IStore, *, derive=derive_secrets, recheck_after: float = 0.0) -> None:
        self._store = store
        self._records = Records(store, recheck_after=recheck_after)
        self._derive = derive
        self._watchers: list = []
        self._depth = 0
        self._notices: list[tuple[str, tuple[str, ...]]] = []

    def watch_accounts(self, watcher) -> None:
        self._watchers.append(watcher)

    def _tell_watchers(self, method: str, *addresses: str) -> None:
        """
        Tell the watchers of a change once it is committed: at once, or
        when the outermost L{transaction} it was made in ends well (a
        rolled-back change is never told).
        """
        if self._depth:
            self._notices.append((method, addresses))
            return
        self._tell(method, addresses)

    def _tell(self, method: str, addresses: tuple[str, ...]) -> None:
        for watcher in list(self._watchers):
            try:
                getattr(watcher, method)(*addresses)
            except Exception:
                self.log.failure(
                    "{watcher!r} failed to follow account {addresses}",
                    watcher=watcher,
                    addresses=" -> ".join(addresses),
                )

    def transaction(self):
        """
        Group several directory changes into one atomic unit.
        """
        return self._writing()

    @contextlib.contextmanager
    def _writing(self):
        self._depth += 1
        try:
            with self._store.transaction(), self._records.writing():
                yield
        except BaseException:
            if self._depth == 1:
                self._notices.clear()
            raise
        finally:
            self._depth -= 1
        if not self._depth and self._notices:
            notices, self._notices = self._notices, []
            for method, addresses in notices:
                self._tell(method, addresses)

    # -- domains -----------------------------------------------------------

    def main_domain(self) -> str | None:
        return self._records.load(SERVER, "main-domain")

    def list_domains(self) -> list[str]:
        return self._records.keys(DOMAIN)

    def real_domain(self, name: str) -> str:
        """
        The domain C{name} refers to, itself or through a domain alias.
        """
        return _raising(self._records.derived("real-domain", name, lambda: _caught(self._real_domain, name)))

    def _real_domain(self, name: str) -> str:
        domain = names.domain_name(name)
        if self._store.get(DOMAIN, domain) is not None:
            return domain
        target = self._records.load(DOMAIN_ALIAS, domain)
        if target is None:
            raise UnknownObject(f"unknown domain {domain!r}")
        return target

    def _domain(self, name: str) -> tuple[str, dict]:
        domain = self.real_domain(name)
        return domain, self._records.load(DOMAIN, domain)

    def create_domain(self, name: str, domain_settings: dict | None = None) -> str:
        domain = names.domain_name(name)
        new_settings = settings.replaced(
            settings.checked(domain_settings or {}, "domain settings")
        )
        with self._writing():
            if self._store.get(DOMAIN, domain) is not None:
                raise NameInUse(f"domain {domain!r} already exists")
            owner = self._records.load(DOMAIN_ALIAS, domain)
            if owner is not None:
                raise NameInUse(f"{domain!r} is already an alias of domain {owner!r}")
            record = {"Settings": new_settings, "AccountDefaults": {}, "Aliases": []}
            self._records.save(DOMAIN, domain, record)
            if self.main_domain() is None:
                self._records.save(SERVER, "main-domain", domain)
        self.log.info("domain {domain} created", domain=domain)
        return domain

    def delete_domain(self, name: str, force: bool = False) -> None:
        domain = names.domain_name(name)
        with self._writing():
            record = self._records.load(DOMAIN, domain)
            if record is None:
                raise UnknownObject(f"unknown domain {domain!r}")
            if domain == self.main_domain():
                raise ObjectInUse(f"{domain!r} is the main domain; it cannot be deleted")
            objects = self._records.names_in(NAME, domain)
            if objects and not force:
                raise ObjectInUse(
                    f"domain {domain!r} still has {len(objects)} objects; "
                    f"delete them first or use FORCE"
                )
            removed = self._records.names_in(ACCOUNT, domain)
            for local in removed:
                self._remove_account(domain, local)
            for kind in (NAME, FORWARDER, GROUP):
                for local in self._records.names_in(kind, domain):
                    self._records.remove(kind, object_key(domain, local))
            for alias in record["Aliases"]:
                self._records.remove(DOMAIN_ALIAS, alias)
            self._records.remove(DOMAIN, domain)
        self.log.info("domain {domain} deleted", domain=domain)
        for local in removed:
            self._tell_watchers("account_removed", f"{local}@{domain}")

    def domain_aliases(self, name: str) -> list[str]:
        return self._domain(name)[1]["Aliases"]

    def set_domain_aliases(self, name: str, aliases: list) -> None:
        new = [names.domain_name(a) for a in _string_list(aliases, "domain aliases")]
        with self._writing():
            domain, record = self._domain(name)
            for alias in new:
                if self._store.get(DOMAIN, alias) is not None:
                    raise NameInUse(f"{alias!r} is a domain; it cannot be an alias")
                owner = self._records.load(DOMAIN_ALIAS, alias)
                if owner not in (None, domain):
                    raise NameInUse(f"{alias!r} is already an alias of domain {owner!r}")
            for alias in record["Aliases"]:
                self._records.remove(DOMAIN_ALIAS, alias)
            for alias in new:
                self._records.save(DOMAIN_ALIAS, alias, domain)
            record["Aliases"] = sorted(set(new))
            self._records.save(DOMAIN, domain, record)

    def domain_settings(self, name: str) -> dict:
        return self._domain(name)[1]["Settings"]

    def domain_effective_settings(self, name: str) -> dict:
        domain = self.real_domain(name)
        return self._records.derived(
            "domain-effective",
            domain,
            lambda: settings.effective(
                settings.BUILTIN_DOMAIN_SETTINGS,
                self.server_domain_defaults(),
                self.domain_settings(domain),
            ),
        )

    def change_domain_settings(self, name: str, new: dict, replace: bool) -> None:
        self._change_domain_part(name, "Settings", new, replace, "domain settings")

    def account_defaults(self, name: str) -> dict:
        return self._domain(name)[1]["AccountDefaults"]

    def change_account_defaults(self, name: str, new: dict, replace: bool) -> None:
        self._change_domain_part(name, "AccountDefaults", new, replace, "account defaults")

    def _change_domain_part(self, name, part, new, replace, what) -> None:
        settings.checked(new, what)
        with self._writing():
            domain, record = self._domain(name)
            if replace:
                record[part] = settings.replaced(new)
            else:
                record[part] = settings.updated(record[part], new)
            self._records.save(DOMAIN, domain, record)

    # -- server-wide defaults ----------------------------------------------

    def server_account_defaults(self) -> dict:
        return self._records.load(SERVER, "account-defaults", {})

    def change_server_account_defaults(self, new: dict, replace: bool) -> None:
        self._change_server_part("account-defaults", new, replace)

    def server_domain_defaults(self) -> dict:
        return self._records.load(SERVER, "domain-defaults", {})

    def change_server_domain_defaults(self, new: dict, replace: bool) -> None:
        self._change_server_part("domain-defaults", new, replace)

    def _change_server_part(self, key: str, new: dict, replace: bool) -> None:
        settings.checked(new, "server defaults")
        with self._writing():
            current = self._records.load(SERVER, key, {})
            result = settings.replaced(new) if replace else settings.updated(current, new)
            self._records.save(SERVER, key, result)

    # -- names -------------------------------------------------------------

    def locate(self, address: str) -> tuple[str, str]:
        """
        The C{(local, domain)} an address names, the domain resolved through
        domain aliases; a bare name is in the main domain.
        """
        local, domain = names.split_address(address, self.main_domain())
        return local, self.real_domain(domain)

    def _claim_name(self, domain: str, local: str, kind: str, account=None) -> None:
        key = object_key(domain, local)
        holder = self._records.load(NAME, key)
        if holder is not None:
            raise NameInUse(
                f"{local}@{domain} is already {_KIND_WORDS[holder['Kind']]}"
            )
        entry = {"Kind": kind}
        if account is not None:
            entry["Account"] = account
        self._records.save(NAME, key, entry)

    def _name_kind(self, domain: str, local: str) -> dict | None:
        return self._records.load(NAME, object_key(domain, local))

    def name_entry(self, local: str, domain: str) -> tuple[str, str] | None:
        """
        What holds name C{local} in (real) C{domain}, for the Router:
        C{("account", name)}, C{("alias", account name)},
        C{("forwarder", target address)}, C{("group", name)}, or L{None}.
        """
        entry = self._name_kind(domain, local)
        if entry is None:
            return None
        kind = entry["Kind"]
        if kind == "alias":
            return kind, entry["Account"]
        if kind == "forwarder":
            return kind, self._records.load(FORWARDER, object_key(domain, local))
        return kind, local

    def resolve_account(self, address: str) -> str | None:
        return self._records.derived("resolved", address, lambda: self._resolve_account(address))

    def _resolve_account(self, address: str) -> str | None:
        try:
            local, domain = self.locate(address)
        except (InvalidName, UnknownObject):
            return None
        entry = self._name_kind(domain, local)
        if entry is None:
            return None
        if entry["Kind"] == "account":
            return f"{local}@{domain}"
        if entry["Kind"] == "alias":
            return f"{entry['Account']}@{domain}"
        return None

    # -- accounts ----------------------------------------------------------

    def _account(self, address: str) -> tuple[str, str, dict]:
        local, domain = self.locate(address)
        entry = self._name_kind(domain, local)
        if entry is not None and entry["Kind"] == "alias":
            local = entry["Account"]
        record = self._records.load(ACCOUNT, object_key(domain, local))
        if record is None:
            raise UnknownObject(f"unknown account {local}@{domain}")
        return local, domain, record

    def account_name(self, address: str) -> str:
        """
        The canonical name of the account C{address} names, or
        L{UnknownObject}.
        """
        local, domain, _ = self._account(address)
        return f"{local}@{domain}"

    def create_account(
        self,
        address: str,
        account_settings: dict | None = None,
        account_type: str = "MultiMailbox",
    ) -> str:
        if account_type not in ACCOUNT_TYPES:
            raise InvalidSettings(
                f"unknown account type {account_type!r}; use one of "
                + ", ".join(ACCOUNT_TYPES)
            )
        explicit = dict(settings.checked(account_settings or {}, "account settings"))
        password = explicit.pop(PASSWORD, None)
        with self._writing():
            local, domain = self.locate(address)
            name = f"{local}@{domain}"
            self._claim_name(domain, local, "account")
            record = {
                "Type": account_type,
                "Settings": settings.replaced(explicit),
                "Aliases": [],
                "Telnums": [],
            }
            if password is not None:
                self._save_secrets(domain, local, password)
            self._records.save(ACCOUNT, object_key(domain, local), record)
        self.log.info("account {account} created", account=name)
        return name

    def _save_secrets(self, domain: str, local: str, password: object) -> None:
        # Kept apart from the account record, which every Signal reads for
        # its rules: the secrets are large and only logins need them.
        secrets = self._secrets(f"{local}@{domain}", password)
        self._records.save(SECRETS, object_key(domain, local), secrets)

    def _secrets(self, account: str, password: object) -> dict:
        if not isinstance(password, str) or not password:
            raise InvalidSettings("the password must be a non-empty string")
        if password == settings.DEFAULT:
            # There is nothing to inherit a password from; removing one
            # silently would lock the account out.
            raise InvalidSettings(
                "a password cannot be set to default; give the new password"
            )
        return self._derive(account, password).to_dict()

    def delete_account(self, address: str) -> None:
        with self._writing():
            local, domain, _ = self._account(address)
            self._remove_account(domain, local)
        self.log.info("account {local}@{domain} deleted", local=local, domain=domain)
        self._tell_watchers("account_removed", f"{local}@{domain}")

    def _remove_account(self, domain: str, local: str) -> None:
        key = object_key(domain, local)
        record = self._records.load(ACCOUNT, key)
        for alias in record["Aliases"]:
            self._records.remove(NAME, object_key(domain, alias))
        for number in record["Telnums"]:
            self._records.remove(TELNUM, number)
        self._records.remove(NAME, key)
        self._records.remove(ACCOUNT, key)
        self._records.remove(SECRETS, key)

    def rename_account(self, address: str, new_address: str) -> str:
        with self._writing():
            local, domain, record = self._account(address)
            new_local, new_domain = self.locate(new_address)
            new_name = f"{new_local}@{new_domain}"
            old_key = object_key(domain, local)
            if (new_local, new_domain) != (local, domain):
                # Checked before the account's own names are released, so
                # that its own alias is reported as what it is.
                holder = self._name_kind(new_domain, new_local)
                if holder is not None:
                    raise NameInUse(
                        f"{new_name} is already {_KIND_WORDS[holder['Kind']]}"
                    )
            for alias in record["Aliases"]:
                self._records.remove(NAME, object_key(domain, alias))
            self._records.remove(NAME, old_key)
            self._records.remove(ACCOUNT, old_key)
            secrets = self._records.load(SECRETS, old_key)
            if secrets is not None:
                self._records.remove(SECRETS, old_key)
                self._records.save(SECRETS, object_key(new_domain, new_local), secrets)
            self._claim_name(new_domain, new_local, "account")
            for alias in record["Aliases"]:
                try:
                    self._claim_name(new_domain, alias, "alias", account=new_local)
                except NameInUse as e:
                    raise NameInUse(
                        f"the alias {alias} cannot follow the account: {e}"
                    ) from None
            for number in record["Telnums"]:
                self._records.save(TELNUM, number, new_name)
            self._records.save(ACCOUNT, object_key(new_domain, new_local), record)
        self.log.info(
            "account {old} renamed to {new}", old=f"{local}@{domain}", new=new_name
        )
        if new_name != f"{local}@{domain}":
            self._tell_watchers("account_renamed", f"{local}@{domain}", new_name)
        return new_name

    def list_accounts(self, domain_name: str) -> dict[str, str]:
        domain = self.real_domain(domain_name)
        return {
            key.partition("/")[2]: record["Type"]
            for key, record in self._records.items(ACCOUNT, object_key(domain, ""))
        }

    def account_settings(self, address: str) -> dict:
        return self._account(address)[2]["Settings"]

    def account_effective_settings(self, address: str) -> dict:
        local, domain, record = self._account(address)
        return self._records.derived(
            "account-effective",
            object_key(domain, local),
            lambda: settings.effective(
                settings.BUILTIN_ACCOUNT_SETTINGS,
                self.server_account_defaults(),
                self.account_defaults(domain),
                record["Settings"],
            ),
        )

    def change_account_settings(self, address: str, new: dict, replace: bool) -> None:
        explicit = dict(settings.checked(new, "account settings"))
        password = explicit.pop(PASSWORD, None)
        with self._writing():
            local, domain, record = self._account(address)
            if replace:
                record["Settings"] = settings.replaced(explicit)
            else:
                record["Settings"] = settings.updated(record["Settings"], explicit)
            if password is not None:
                self._save_secrets(domain, local, password)
            self._records.save(ACCOUNT, object_key(domain, local), record)

    def set_password(self, address: str, password: str) -> None:
        with self._writing():
            local, domain, _ = self._account(address)
            self._save_secrets(domain, local, password)
        self.log.info("password of {local}@{domain} set", local=local, domain=domain)

    def password_secrets(self, account: str) -> PasswordSecrets | None:
        try:
            local, domain, _ = self._account(account)
        except (InvalidName, UnknownObject):
            return None
        key = object_key(domain, local)

        def parsed():
            secrets = self._records.load(SECRETS, key)
            return None if secrets is None else PasswordSecrets.from_dict(secrets)

        return _raising(self._records.derived("secrets", key, lambda: _caught(parsed)))

    def refresh_secrets(self, account: str, password: str) -> None:
        self.set_password(account, password)

    def account_aliases(self, address: str) -> list[str]:
        return self._account(address)[2]["Aliases"]

    def set_account_aliases(self, address: str, aliases: list) -> None:
        new = sorted({names.local_name(a) for a in _string_list(aliases, "aliases")})
        with self._writing():
            local, domain, record = self._account(address)
            for alias in record["Aliases"]:
                self._records.remove(NAME, object_key(domain, alias))
            for alias in new:
                self._claim_name(domain, alias, "alias", account=local)
            record["Aliases"] = new
            self._records.save(ACCOUNT, object_key(domain, local), record)

    def account_telnums(self, address: str) -> list[str]:
        return self._account(address)[2]["Telnums"]

    def set_account_telnums(self, address: str, numbers: list) -> None:
        new = list(dict.fromkeys(names.telnum(n) for n in _string_list(numbers, "telnums")))
        with self._writing():
            local, domain, record = self._account(address)
            name = f"{local}@{domain}"
            for number in new:
                owner = self._records.load(TELNUM, number)
                if owner not in (None, name):
                    raise NameInUse(f"telnum {number} already belongs to {owner}")
            for number in record["Telnums"]:
                self._records.remove(TELNUM, number)
            for number in new:
                self._records.save(TELNUM, number, name)
            record["Telnums"] = new
            self._records.save(ACCOUNT, object_key(domain, local), record)

    def telnum_owner(self, number: str) -> str | None:
        """
        The account holding telephone number C{number}, or L{None}.
        """
        return self._records.load(TELNUM, number)

    def server_telnums(self) -> dict[str, str]:
        return dict(self._records.items(TELNUM))

    # -- Signal Rules --------------------------------------------------------

    def signal_rules(self, owner: str | None) -> list:
        """
        The stored Signal Rules (data-format arrays) of the server
        (C{owner} L{None}), a domain (C{example.com}) or an account
        (C{user@domain}).
        """
        if owner is None:
            return self._records.load(SERVER, "signal-rules", [])
        if "@" in owner:
            return self._account(owner)[2].get("SignalRules", [])
        return self._domain(owner)[1].get("SignalRules", [])

    def set_signal_rules(self, owner: str | None, rules: list) -> None:
        """
        Replace the Signal Rules of C{owner} (see L{signal_rules}); the
        caller has validated them.
        """
        with self._writing():
            if owner is None:
                self._records.save(SERVER, "signal-rules", rules)
            elif "@" in owner:
                local, domain, record = self._account(owner)
                record["SignalRules"] = rules
                self._records.save(ACCOUNT, object_key(domain, local), record)
            else:
                domain, record = self._domain(owner)
                record["SignalRules"] = rules
                self._records.save(DOMAIN, domain, record)

    # -- forwarders --------------------------------------------------------

    def create_forwarder(self, address: str, target: str) -> str:
        if not isinstance(target, str) or not target.strip():
            raise InvalidSettings("a forwarder needs a target address")
        with self._writing():
            local, domain = self.locate(address)
            self._claim_name(domain, local, "forwarder")
            self._records.save(FORWARDER, object_key(domain, local), target.strip())
        return f"{local}@{domain}"

    def forwarder(self, address: str) -> str:
        local, domain = self.locate(address)
        target = self._records.load(FORWARDER, object_key(domain, local))
        if target is None:
            raise UnknownObject(f"unknown forwarder {local}@{domain}")
        return target

    def delete_forwarder(self, address: str) -> None:
        self._delete_object(FORWARDER, "forwarder", address)

    def list_forwarders(self, domain_name: str) -> list[str]:
        return self._records.names_in(FORWARDER, self.real_domain(domain_name))

    def _delete_object(self, kind: str, word: str, address: str) -> None:
        with self._writing():
            local, domain = self.locate(address)
            key = object_key(domain, local)
            if not self._records.remove(kind, key):
                raise UnknownObject(f"unknown {word} {local}@{domain}")
            self._records.remove(NAME, key)

    # -- groups ------------------------------------------------------------

    @staticmethod
    def _group_settings(group_settings: object) -> dict:
        result = settings.replaced(settings.checked(group_settings, "group settings"))
        if "Members" in result:
            _string_list(result["Members"], "Members")
        return result

    def create_group(self, address: str, group_settings: dict | None = None) -> str:
        record = self._group_settings(group_settings or {})
        with self._writing():
            local, domain = self.locate(address)
            self._claim_name(domain, local, "group")
            self._records.save(GROUP, object_key(domain, local), record)
        return f"{local}@{domain}"

    def group(self, address: str) -> dict:
        local, domain = self.locate(address)
        record = self._records.load(GROUP, object_key(domain, local))
        if record is None:
            raise UnknownObject(f"unknown group {local}@{domain}")
        return record

    def set_group(self, address: str, group_settings: dict) -> None:
        record = self._group_settings(group_settings)
        with self._writing():
            self.group(address)
            local, domain = self.locate(address)
            self._records.save(GROUP, object_key(domain, local), record)

    def delete_group(self, address: str) -> None:
        self._delete_object(GROUP, "group", address)

    def list_groups(self, domain_name: str) -> list[str]:
        return self._records.names_in(GROUP, self.real_domain(domain_name))

    def group_members(self, address: str) -> list[str]:
        """
        The members of a group as full addresses: bare names are in the
        group's domain.
        """
        local, domain = self.locate(address)
        return [
            member if "@" in member else f"{member}@{domain}"
            for member in self.group(address).get("Members", [])
        ]
