"""
Tests for communigate.directory: domains, accounts, aliases, telephone
numbers, forwarders, groups and settings inheritance, over a MemoryStore.

Password secrets are derived with one PBKDF2 round (injected), so the
tests stay fast; one test checks the real default.
"""

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from communigate.auth.passwords import DEFAULT_ITERATIONS, check_plain, derive_secrets
from communigate.directory import (
    Directory,
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
    SERVER,
    TELNUM,
)
from communigate.directory.settings import (
    BUILTIN_ACCOUNT_SETTINGS,
    BUILTIN_DOMAIN_SETTINGS,
    is_yes,
)
from communigate.interfaces import IDirectory, IPasswordSecretsSource
from communigate.storage import MemoryStore, SQLiteStore

FAST_DERIVE = functools.partial(derive_secrets, iterations=1)
ALL_KINDS = (SERVER, DOMAIN, DOMAIN_ALIAS, NAME, ACCOUNT, FORWARDER, GROUP, TELNUM)


def snapshot(store):
    """
    Everything the directory keeps, to compare before and after a refusal.
    """
    return {kind: store.scan(kind) for kind in ALL_KINDS}


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    """
    The directory's behaviour must not depend on the store: every test runs
    over both.
    """
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = SQLiteStore(str(tmp_path / "directory.sqlite"))
    yield opened
    opened.close()


@pytest.fixture
def directory(store):
    """
    A directory with the main domain example.com and a second domain
    example.org.
    """
    found = Directory(store, derive=FAST_DERIVE)
    found.create_domain("example.com")
    found.create_domain("example.org")
    return found


def test_directory_provides_its_interfaces(directory):
    assert verifyObject(IDirectory, directory)
    assert verifyObject(IPasswordSecretsSource, directory)


# -- domains -----------------------------------------------------------------


def test_empty_directory_has_no_main_domain(store):
    assert Directory(store).main_domain() is None
    assert Directory(store).list_domains() == []


def test_first_domain_becomes_the_main_domain(store):
    directory = Directory(store, derive=FAST_DERIVE)
    assert directory.create_domain("First.Example.") == "first.example"
    directory.create_domain("second.example")
    assert directory.main_domain() == "first.example"
    assert directory.list_domains() == ["first.example", "second.example"]


def test_create_domain_keeps_its_settings_without_default_values(directory):
    directory.create_domain("example.net", {"SignalToUnknown": "Rerouted", "X": "default"})
    assert directory.domain_settings("example.net") == {"SignalToUnknown": "Rerouted"}
    assert directory.account_defaults("example.net") == {}
    assert directory.domain_aliases("example.net") == []


def test_duplicate_domain_is_refused_whatever_the_case(directory):
    with pytest.raises(NameInUse, match="domain 'example.org' already exists"):
        directory.create_domain("EXAMPLE.org")


@pytest.mark.parametrize(
    "name", ["", "-bad.com", "bad-.com", "a..b", "under_score.com", "sp ace.com", "x" * 64 + ".com"]
)
def test_invalid_domain_names_are_refused(directory, name):
    with pytest.raises(InvalidName, match="not a valid domain name"):
        directory.create_domain(name)


def test_main_domain_cannot_be_deleted(directory):
    with pytest.raises(ObjectInUse, match="'example.com' is the main domain"):
        directory.delete_domain("example.com", force=True)
    assert "example.com" in directory.list_domains()


def test_deleting_an_unknown_domain_is_refused(directory):
    with pytest.raises(UnknownObject, match="unknown domain 'nowhere.example'"):
        directory.delete_domain("nowhere.example")


def test_empty_domain_is_deleted_without_force(directory):
    directory.delete_domain("example.org")
    assert directory.list_domains() == ["example.com"]


def test_domain_with_objects_is_not_deleted_without_force(directory):
    directory.create_account("alice@example.org")
    directory.create_forwarder("fwd@example.org", "x@elsewhere.example")
    with pytest.raises(ObjectInUse, match="still has 2 objects; delete them first or use FORCE"):
        directory.delete_domain("example.org")
    assert directory.resolve_account("alice@example.org") == "alice@example.org"


def test_forced_domain_deletion_removes_everything_in_it(directory, store):
    before = snapshot(store)
    directory.create_account("alice@example.org", {"Password": "pw"})
    directory.set_account_aliases("alice@example.org", ["al"])
    directory.set_account_telnums("alice@example.org", ["5551234"])
    directory.create_forwarder("fwd@example.org", "x@elsewhere.example")
    directory.create_group("team@example.org", {"Members": ["alice"]})
    directory.set_domain_aliases("example.org", ["org-alias.example"])
    directory.change_account_defaults("example.org", {"RealName": "X"}, replace=False)

    directory.delete_domain("example.org", force=True)

    before[DOMAIN] = [(k, v) for k, v in before[DOMAIN] if k != "example.org"]
    assert snapshot(store) == before
    # The freed names can be taken again.
    directory.set_domain_aliases("example.com", ["org-alias.example"])
    directory.create_account("bob@example.com")
    directory.set_account_telnums("bob@example.com", ["5551234"])
    assert directory.telnum_owner("5551234") == "bob@example.com"


def test_forced_deletion_leaves_other_domains_alone(directory):
    directory.create_account("alice@example.com")
    directory.create_account("alice@example.org")
    directory.set_account_telnums("alice@example.com", ["1"])
    directory.delete_domain("example.org", force=True)
    assert directory.list_accounts("example.com") == {
        "alice": "MultiMailbox",
    }
    assert directory.server_telnums() == {"1": "alice@example.com"}


# -- domain aliases ------------------------------------------------------------


def test_domain_alias_resolves_to_its_domain(directory):
    directory.set_domain_aliases("example.com", ["Mail.Example.com", "other.example"])
    assert directory.domain_aliases("example.com") == ["mail.example.com", "other.example"]
    assert directory.real_domain("other.example") == "example.com"
    directory.create_account("alice@example.com")
    assert directory.resolve_account("alice@other.example") == "alice@example.com"
    assert directory.account_name("ALICE@mail.example.com") == "alice@example.com"


def test_account_created_through_a_domain_alias_lives_in_the_real_domain(directory):
    directory.set_domain_aliases("example.com", ["other.example"])
    assert directory.create_account("bob@other.example") == "bob@example.com"
    assert directory.list_accounts("example.com") == {"bob": "MultiMailbox"}


def test_domain_alias_cannot_be_a_domain(directory):
    with pytest.raises(NameInUse, match="'example.org' is a domain; it cannot be an alias"):
        directory.set_domain_aliases("example.com", ["example.org"])


def test_domain_alias_cannot_be_another_domains_alias(directory):
    directory.set_domain_aliases("example.org", ["shared.example"])
    with pytest.raises(
        NameInUse, match="'shared.example' is already an alias of domain 'example.org'"
    ):
        directory.set_domain_aliases("example.com", ["shared.example"])
    assert directory.real_domain("shared.example") == "example.org"


def test_new_domain_cannot_take_an_alias_name(directory):
    directory.set_domain_aliases("example.org", ["shared.example"])
    with pytest.raises(NameInUse, match="already an alias of domain 'example.org'"):
        directory.create_domain("shared.example")


def test_replacing_domain_aliases_frees_the_old_ones(directory):
    directory.set_domain_aliases("example.org", ["old.example"])
    directory.set_domain_aliases("example.org", ["new.example"])
    with pytest.raises(UnknownObject, match="unknown domain 'old.example'"):
        directory.real_domain("old.example")
    directory.set_domain_aliases("example.com", ["old.example"])
    assert directory.real_domain("old.example") == "example.com"


def test_domain_aliases_must_be_an_array_of_strings(directory):
    with pytest.raises(InvalidSettings, match="domain aliases must be an array of strings"):
        directory.set_domain_aliases("example.com", "alias.example")


# -- accounts --------------------------------------------------------------------


def test_create_account_with_settings_and_password(directory):
    name = directory.create_account(
        "Alice@Example.COM", {"RealName": "Alice", "Password": "secret"}
    )
    assert name == "alice@example.com"
    assert directory.account_settings("alice@example.com") == {"RealName": "Alice"}
    secrets = directory.password_secrets("alice@example.com")
    assert secrets is not None
    assert check_plain(secrets, "secret")
    assert not check_plain(secrets, "Secret")
    assert secrets.digest_is_current("alice@example.com")


def test_password_is_never_kept_in_the_store(directory, store):
    directory.create_account("alice@example.com", {"Password": "Pa55-unique-word"})
    directory.change_account_settings(
        "alice@example.com", {"Password": "Another-unique-word"}, replace=False
    )
    directory.set_password("alice@example.com", "Third-unique-word")
    text = repr(snapshot(store))
    for password in ("Pa55-unique-word", "Another-unique-word", "Third-unique-word"):
        assert password not in text
    assert "Password" not in directory.account_settings("alice@example.com")


def test_account_without_password_has_no_secrets(directory):
    directory.create_account("alice@example.com")
    assert directory.password_secrets("alice@example.com") is None


def test_unknown_account_has_no_secrets(directory):
    assert directory.password_secrets("ghost@example.com") is None
    assert directory.password_secrets("not an address") is None


def test_default_derivation_uses_the_default_iterations(store):
    directory = Directory(store)
    directory.create_domain("example.com")
    directory.create_account("alice@example.com", {"Password": "secret"})
    secrets = directory.password_secrets("alice@example.com")
    assert secrets.plain_iterations == DEFAULT_ITERATIONS
    assert not secrets.needs_refresh("alice@example.com")
    assert check_plain(secrets, "secret")


def test_set_password_replaces_the_secrets(directory):
    directory.create_account("alice@example.com", {"Password": "old"})
    directory.set_password("alice@example.com", "new")
    secrets = directory.password_secrets("alice@example.com")
    assert check_plain(secrets, "new")
    assert not check_plain(secrets, "old")


@pytest.mark.parametrize("password", ["", ("a", "b"), {"x": "y"}])
def test_password_must_be_a_non_empty_string(directory, store, password):
    before = snapshot(store)
    with pytest.raises(InvalidSettings, match="the password must be a non-empty string"):
        directory.create_account("alice@example.com", {"Password": password})
    assert snapshot(store) == before


def test_duplicate_account_is_refused(directory):
    directory.create_account("alice@example.com")
    with pytest.raises(NameInUse, match="alice@example.com is already an account"):
        directory.create_account("ALICE@example.com")


def test_same_name_in_two_domains_is_two_accounts(directory):
    directory.create_account("alice@example.com")
    directory.create_account("alice@example.org")
    assert directory.resolve_account("alice@example.org") == "alice@example.org"


@pytest.mark.parametrize("name", [".alice", "-alice", "al ice", "al/ice", "a" * 65, ""])
def test_invalid_account_names_are_refused(directory, name):
    with pytest.raises(InvalidName, match="not a valid object name"):
        directory.create_account(f"{name}@example.com")


def test_account_in_unknown_domain_is_refused(directory):
    with pytest.raises(UnknownObject, match="unknown domain 'nowhere.example'"):
        directory.create_account("alice@nowhere.example")


def test_bare_account_name_is_in_the_main_domain(directory):
    assert directory.create_account("bob") == "bob@example.com"
    assert directory.resolve_account("bob") == "bob@example.com"


@pytest.mark.parametrize("account_type", ["MultiMailbox", "TextMailbox", "AGrade", "CGrade"])
def test_account_types_are_listed(directory, account_type):
    directory.create_account("alice@example.com", account_type=account_type)
    assert directory.list_accounts("example.com") == {"alice": account_type}


def test_unknown_account_type_is_refused(directory, store):
    before = snapshot(store)
    with pytest.raises(InvalidSettings, match="unknown account type 'Mailbox'; use one of"):
        directory.create_account("alice@example.com", account_type="Mailbox")
    assert snapshot(store) == before


def test_account_settings_must_be_a_dictionary(directory):
    with pytest.raises(InvalidSettings, match="account settings must be a dictionary"):
        directory.create_account("alice@example.com", ["RealName"])


def test_delete_account_frees_its_name_aliases_and_telnums(directory, store):
    before = snapshot(store)
    directory.create_account("alice@example.com", {"Password": "x"})
    directory.set_account_aliases("alice@example.com", ["al", "ally"])
    directory.set_account_telnums("alice@example.com", ["100", "+200"])
    directory.delete_account("al@example.com")
    assert snapshot(store) == before
    assert directory.resolve_account("alice@example.com") is None
    assert directory.telnum_owner("100") is None


def test_deleting_an_unknown_account_is_refused(directory):
    with pytest.raises(UnknownObject, match="unknown account ghost@example.com"):
        directory.delete_account("ghost@example.com")


def test_resolve_account_ignores_forwarders_groups_and_bad_names(directory):
    directory.create_forwarder("fwd@example.com", "x@elsewhere.example")
    directory.create_group("team@example.com")
    assert directory.resolve_account("fwd@example.com") is None
    assert directory.resolve_account("team@example.com") is None
    assert directory.resolve_account("ghost@example.com") is None
    assert directory.resolve_account("alice@nowhere.example") is None
    assert directory.resolve_account("not valid@example.com") is None


def test_account_operations_do_not_accept_a_forwarder_name(directory):
    directory.create_forwarder("fwd@example.com", "x@elsewhere.example")
    with pytest.raises(UnknownObject, match="unknown account fwd@example.com"):
        directory.account_settings("fwd@example.com")


# -- account aliases ---------------------------------------------------------------


def test_account_alias_resolves_to_the_account(directory):
    directory.create_account("alice@example.com")
    directory.set_account_aliases("alice@example.com", ["Ally", "al"])
    assert directory.account_aliases("alice@example.com") == ["al", "ally"]
    assert directory.resolve_account("ally@example.com") == "alice@example.com"
    assert directory.account_name("al@example.com") == "alice@example.com"
    # An alias also names the account for changes.
    directory.change_account_settings("al@example.com", {"RealName": "A"}, replace=False)
    assert directory.account_settings("alice@example.com") == {"RealName": "A"}


@pytest.mark.parametrize(
    "setup, alias, message",
    [
        (lambda d: None, "bob", "bob@example.com is already an account"),
        (lambda d: None, "alice", "alice@example.com is already an account"),
        (
            lambda d: d.create_forwarder("fwd@example.com", "x@elsewhere.example"),
            "fwd",
            "fwd@example.com is already a forwarder",
        ),
        (lambda d: d.create_group("team@example.com"), "team", "team@example.com is already a group"),
        (
            lambda d: d.set_account_aliases("bob@example.com", ["bobby"]),
            "bobby",
            "bobby@example.com is already an account alias",
        ),
    ],
)
def test_account_alias_cannot_take_a_used_name(directory, store, setup, alias, message):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.com")
    directory.set_account_aliases("alice@example.com", ["al"])
    setup(directory)
    before = snapshot(store)
    with pytest.raises(NameInUse, match=message):
        directory.set_account_aliases("alice@example.com", ["al2", alias])
    assert snapshot(store) == before
    assert directory.account_aliases("alice@example.com") == ["al"]


def test_objects_cannot_take_an_alias_name(directory):
    directory.create_account("alice@example.com")
    directory.set_account_aliases("alice@example.com", ["al"])
    with pytest.raises(NameInUse, match="al@example.com is already an account alias"):
        directory.create_account("al@example.com")
    with pytest.raises(NameInUse, match="already an account alias"):
        directory.create_forwarder("al@example.com", "x@y.example")
    with pytest.raises(NameInUse, match="already an account alias"):
        directory.create_group("al@example.com")


def test_same_alias_in_another_domain_is_free(directory):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.org")
    directory.set_account_aliases("alice@example.com", ["al"])
    directory.set_account_aliases("bob@example.org", ["al"])
    assert directory.resolve_account("al@example.org") == "bob@example.org"


def test_replacing_aliases_frees_the_old_names(directory):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.com")
    directory.set_account_aliases("alice@example.com", ["old"])
    directory.set_account_aliases("alice@example.com", ["new"])
    assert directory.resolve_account("old@example.com") is None
    directory.set_account_aliases("bob@example.com", ["old"])
    assert directory.resolve_account("old@example.com") == "bob@example.com"


def test_account_keeps_its_own_aliases_when_setting_them_again(directory):
    directory.create_account("alice@example.com")
    directory.set_account_aliases("alice@example.com", ["al"])
    directory.set_account_aliases("alice@example.com", ["al", "ally"])
    assert directory.account_aliases("alice@example.com") == ["al", "ally"]


@pytest.mark.parametrize("aliases", ["al", [("al",)], ["ok", 5]])
def test_aliases_must_be_an_array_of_strings(directory, aliases):
    directory.create_account("alice@example.com")
    with pytest.raises(InvalidSettings, match="aliases must be an array of strings"):
        directory.set_account_aliases("alice@example.com", aliases)


def test_invalid_alias_name_is_refused(directory):
    directory.create_account("alice@example.com")
    with pytest.raises(InvalidName, match="'a b' is not a valid object name"):
        directory.set_account_aliases("alice@example.com", ["a b"])


# -- telephone numbers -------------------------------------------------------------


def test_telnums_belong_to_one_account_server_wide(directory, store):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.org")
    directory.set_account_telnums("alice@example.com", ["+15551234", "100"])
    assert directory.telnum_owner("+15551234") == "alice@example.com"
    before = snapshot(store)
    with pytest.raises(NameInUse, match="telnum 100 already belongs to alice@example.com"):
        directory.set_account_telnums("bob@example.org", ["200", "100"])
    assert snapshot(store) == before
    assert directory.account_telnums("bob@example.org") == []


def test_setting_an_accounts_own_telnums_again_is_allowed(directory):
    directory.create_account("alice@example.com")
    directory.set_account_telnums("alice@example.com", ["100", "200"])
    directory.set_account_telnums("alice@example.com", ["200", "300", "200"])
    assert directory.account_telnums("alice@example.com") == ["200", "300"]
    assert directory.server_telnums() == {
        "200": "alice@example.com",
        "300": "alice@example.com",
    }


@pytest.mark.parametrize("number", ["", "12a", "++1", "1 2", "1" * 32, "+"])
def test_invalid_telnums_are_refused(directory, number):
    directory.create_account("alice@example.com")
    with pytest.raises(InvalidName, match="is not a telephone number"):
        directory.set_account_telnums("alice@example.com", [number])


def test_telnums_must_be_an_array_of_strings(directory):
    directory.create_account("alice@example.com")
    with pytest.raises(InvalidSettings, match="telnums must be an array of strings"):
        directory.set_account_telnums("alice@example.com", "100")


def test_deleting_an_account_frees_its_telnums(directory):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.com")
    directory.set_account_telnums("alice@example.com", ["100"])
    directory.delete_account("alice@example.com")
    directory.set_account_telnums("bob@example.com", ["100"])
    assert directory.telnum_owner("100") == "bob@example.com"


def test_telnums_for_an_unknown_account_are_refused(directory):
    with pytest.raises(UnknownObject, match="unknown account ghost@example.com"):
        directory.set_account_telnums("ghost@example.com", ["100"])


# -- rename ------------------------------------------------------------------------


def test_rename_within_the_domain_moves_everything(directory, store):
    directory.create_account("alice@example.com", {"RealName": "A", "Password": "pw"})
    directory.set_account_aliases("alice@example.com", ["al"])
    directory.set_account_telnums("alice@example.com", ["100"])

    assert directory.rename_account("alice@example.com", "Alicia") == "alicia@example.com"

    assert directory.resolve_account("alice@example.com") is None
    assert directory.resolve_account("al@example.com") == "alicia@example.com"
    assert directory.account_settings("alicia@example.com") == {"RealName": "A"}
    assert directory.telnum_owner("100") == "alicia@example.com"
    assert directory.list_accounts("example.com") == {"alicia": "MultiMailbox"}
    # The old name is free again.
    directory.create_account("alice@example.com")


def test_rename_into_another_domain_takes_aliases_along(directory):
    directory.create_account("alice@example.com")
    directory.set_account_aliases("alice@example.com", ["al"])
    directory.set_account_telnums("alice@example.com", ["100"])

    assert directory.rename_account("alice@example.com", "alice@example.org") == "alice@example.org"

    assert directory.list_accounts("example.com") == {}
    assert directory.resolve_account("al@example.org") == "alice@example.org"
    assert directory.resolve_account("al@example.com") is None
    assert directory.telnum_owner("100") == "alice@example.org"


def test_rename_makes_sip_digest_secrets_stale_but_keeps_the_password(directory):
    directory.create_account("alice@example.com", {"Password": "pw"})
    directory.rename_account("alice@example.com", "alicia@example.org")
    secrets = directory.password_secrets("alicia@example.org")
    assert not secrets.digest_is_current("alicia@example.org")
    assert secrets.needs_refresh("alicia@example.org")
    assert check_plain(secrets, "pw")
    directory.refresh_secrets("alicia@example.org", "pw")
    assert directory.password_secrets("alicia@example.org").digest_is_current(
        "alicia@example.org"
    )


@pytest.mark.parametrize(
    "setup, target, error, message",
    [
        (lambda d: d.create_account("bob@example.com"), "bob", NameInUse, "already an account"),
        (
            lambda d: d.set_account_aliases("alice@example.com", ["al"]),
            "al",
            NameInUse,
            "al@example.com is already an account alias",
        ),
        (
            lambda d: d.create_forwarder("fwd@example.org", "x@y.example"),
            "fwd@example.org",
            NameInUse,
            "already a forwarder",
        ),
        (lambda d: None, "alice@nowhere.example", UnknownObject, "unknown domain"),
        (lambda d: None, "bad name", InvalidName, "not a valid object name"),
    ],
)
def test_rename_to_a_taken_or_bad_name_changes_nothing(
    directory, store, setup, target, error, message
):
    directory.create_account("alice@example.com", {"Password": "pw"})
    directory.set_account_telnums("alice@example.com", ["100"])
    setup(directory)
    before = snapshot(store)
    with pytest.raises(error, match=message):
        directory.rename_account("alice@example.com", target)
    assert snapshot(store) == before


def test_rename_refused_when_an_alias_cannot_follow_into_the_new_domain(directory, store):
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.org")
    directory.set_account_aliases("alice@example.com", ["bob"])
    before = snapshot(store)
    with pytest.raises(
        NameInUse,
        match="the alias bob cannot follow the account: bob@example.org is already an account",
    ):
        directory.rename_account("alice@example.com", "alice@example.org")
    assert snapshot(store) == before


def test_rename_to_the_same_name_changes_nothing(directory, store):
    directory.create_account("alice@example.com", {"Password": "pw"})
    directory.set_account_aliases("alice@example.com", ["al"])
    before = snapshot(store)
    assert directory.rename_account("ALICE", "alice@example.com") == "alice@example.com"
    assert snapshot(store) == before


def test_renaming_an_unknown_account_is_refused(directory):
    with pytest.raises(UnknownObject, match="unknown account ghost@example.com"):
        directory.rename_account("ghost@example.com", "spirit@example.com")


# -- forwarders --------------------------------------------------------------------


def test_forwarder_lifecycle(directory):
    assert directory.create_forwarder("Sales", " boss@elsewhere.example ") == "sales@example.com"
    assert directory.forwarder("sales@example.com") == "boss@elsewhere.example"
    assert directory.list_forwarders("example.com") == ["sales"]
    directory.delete_forwarder("sales")
    assert directory.list_forwarders("example.com") == []
    directory.create_account("sales@example.com")


def test_forwarder_name_collides_with_other_objects(directory):
    directory.create_account("alice@example.com")
    with pytest.raises(NameInUse, match="alice@example.com is already an account"):
        directory.create_forwarder("alice@example.com", "x@y.example")
    directory.create_forwarder("fwd@example.com", "x@y.example")
    with pytest.raises(NameInUse, match="fwd@example.com is already a forwarder"):
        directory.create_forwarder("fwd@example.com", "z@y.example")


@pytest.mark.parametrize("target", ["", "   ", ("a",)])
def test_forwarder_needs_a_target(directory, target):
    with pytest.raises(InvalidSettings, match="a forwarder needs a target address"):
        directory.create_forwarder("fwd@example.com", target)


def test_unknown_forwarder_is_refused(directory):
    directory.create_account("alice@example.com")
    with pytest.raises(UnknownObject, match="unknown forwarder alice@example.com"):
        directory.forwarder("alice@example.com")
    with pytest.raises(UnknownObject, match="unknown forwarder alice@example.com"):
        directory.delete_forwarder("alice@example.com")
    assert directory.resolve_account("alice@example.com") == "alice@example.com"


# -- groups ------------------------------------------------------------------------


def test_group_lifecycle(directory):
    assert directory.create_group("team", {"Members": ["alice", "bob@example.org"]}) == (
        "team@example.com"
    )
    assert directory.group("team@example.com") == {"Members": ["alice", "bob@example.org"]}
    assert directory.list_groups("example.com") == ["team"]
    directory.set_group("team@example.com", {"Members": ["carol"], "RealName": "Team"})
    assert directory.group("team@example.com") == {"Members": ["carol"], "RealName": "Team"}
    directory.delete_group("team@example.com")
    assert directory.list_groups("example.com") == []


def test_group_members_are_qualified_with_the_groups_domain(directory):
    directory.create_group("team@example.org", {"Members": ["alice", "bob@example.com"]})
    assert directory.group_members("team@example.org") == [
        "alice@example.org",
        "bob@example.com",
    ]


def test_group_without_members_has_none(directory):
    directory.create_group("team@example.com")
    assert directory.group_members("team@example.com") == []


@pytest.mark.parametrize("members", ["alice", ["alice", ["bob"]], {"a": "b"}])
def test_group_members_must_be_an_array_of_strings(directory, store, members):
    before = snapshot(store)
    with pytest.raises(InvalidSettings, match="Members must be an array of strings"):
        directory.create_group("team@example.com", {"Members": members})
    assert snapshot(store) == before
    directory.create_group("team@example.com", {"Members": ["a"]})
    with pytest.raises(InvalidSettings, match="Members must be an array of strings"):
        directory.set_group("team@example.com", {"Members": members})
    assert directory.group("team@example.com") == {"Members": ["a"]}


def test_unknown_group_is_refused(directory):
    with pytest.raises(UnknownObject, match="unknown group team@example.com"):
        directory.group("team@example.com")
    with pytest.raises(UnknownObject, match="unknown group team@example.com"):
        directory.set_group("team@example.com", {})
    with pytest.raises(UnknownObject, match="unknown group team@example.com"):
        directory.delete_group("team@example.com")


# -- settings inheritance ----------------------------------------------------------


def test_account_effective_settings_fall_back_through_every_level(directory):
    directory.create_account("alice@example.com", {"A": "account"})
    directory.change_account_defaults(
        "example.com", {"A": "domain", "B": "domain"}, replace=False
    )
    directory.change_server_account_defaults(
        {"A": "server", "B": "server", "C": "server", "RealName": "server"}, replace=False
    )
    found = directory.account_effective_settings("alice@example.com")
    assert found["A"] == "account"
    assert found["B"] == "domain"
    assert found["C"] == "server"
    assert found["RealName"] == "server"
    assert found["MaxSignalContacts"] == BUILTIN_ACCOUNT_SETTINGS["MaxSignalContacts"]
    assert list(found) == sorted(found)
    # Explicit settings are only the account's own.
    assert directory.account_settings("alice@example.com") == {"A": "account"}


def test_update_merges_and_default_removes_an_explicit_key(directory):
    directory.create_account("alice@example.com", {"X": "mine", "Y": "mine"})
    directory.change_account_defaults("example.com", {"X": "domain"}, replace=False)
    directory.change_account_settings(
        "alice@example.com", {"X": "default", "Z": "new"}, replace=False
    )
    assert directory.account_settings("alice@example.com") == {"Y": "mine", "Z": "new"}
    assert directory.account_effective_settings("alice@example.com")["X"] == "domain"


def test_default_for_a_key_that_is_not_set_is_harmless(directory):
    directory.create_account("alice@example.com", {"Y": "mine"})
    directory.change_account_settings("alice@example.com", {"X": "default"}, replace=False)
    assert directory.account_settings("alice@example.com") == {"Y": "mine"}


def test_set_replaces_the_whole_dictionary(directory):
    directory.create_account("alice@example.com", {"X": "1", "Y": "2"})
    directory.change_account_settings("alice@example.com", {"Z": "3", "W": "default"}, replace=True)
    assert directory.account_settings("alice@example.com") == {"Z": "3"}


def test_account_defaults_update_and_set(directory):
    directory.change_account_defaults("example.com", {"X": "1", "Y": "2"}, replace=False)
    directory.change_account_defaults("example.com", {"X": "default"}, replace=False)
    assert directory.account_defaults("example.com") == {"Y": "2"}
    directory.change_account_defaults("example.com", {"Z": "3"}, replace=True)
    assert directory.account_defaults("example.com") == {"Z": "3"}


def test_server_account_defaults_update_and_set(directory):
    assert directory.server_account_defaults() == {}
    directory.change_server_account_defaults({"X": "1", "Y": "2"}, replace=False)
    directory.change_server_account_defaults({"Y": "default"}, replace=False)
    assert directory.server_account_defaults() == {"X": "1"}
    directory.change_server_account_defaults({"Z": "3"}, replace=True)
    assert directory.server_account_defaults() == {"Z": "3"}


def test_account_defaults_of_one_domain_do_not_reach_another(directory):
    directory.create_account("alice@example.org")
    directory.change_account_defaults("example.com", {"X": "com"}, replace=False)
    assert "X" not in directory.account_effective_settings("alice@example.org")


def test_domain_effective_settings_inherit_server_defaults_and_built_ins(directory):
    directory.change_server_domain_defaults(
        {"SignalToUnknown": "Rerouted", "Q": "server"}, replace=False
    )
    directory.change_domain_settings("example.com", {"Q": "domain"}, replace=False)
    found = directory.domain_effective_settings("example.com")
    assert found["Q"] == "domain"
    assert found["SignalToUnknown"] == "Rerouted"
    assert found["AccessToUnknown"] == BUILTIN_DOMAIN_SETTINGS["AccessToUnknown"]
    assert directory.domain_effective_settings("example.org")["Q"] == "server"
    directory.change_domain_settings("example.com", {"Q": "default"}, replace=False)
    assert directory.domain_effective_settings("example.com")["Q"] == "server"
    directory.change_domain_settings("example.com", {"R": "x"}, replace=True)
    assert directory.domain_settings("example.com") == {"R": "x"}


def test_server_domain_defaults_update_and_set(directory):
    directory.change_server_domain_defaults({"X": "1", "Y": "2"}, replace=False)
    directory.change_server_domain_defaults({"X": "default"}, replace=False)
    assert directory.server_domain_defaults() == {"Y": "2"}
    directory.change_server_domain_defaults({"Z": "3"}, replace=True)
    assert directory.server_domain_defaults() == {"Z": "3"}


def test_domain_settings_through_an_alias(directory):
    directory.set_domain_aliases("example.org", ["alias.example"])
    directory.change_domain_settings("alias.example", {"Q": "1"}, replace=False)
    assert directory.domain_settings("example.org") == {"Q": "1"}


@pytest.mark.parametrize("bad", [["X"], "X", {"": "empty key"}])
def test_settings_must_be_a_dictionary_with_keys(directory, store, bad):
    directory.create_account("alice@example.com")
    before = snapshot(store)
    for change in (
        lambda: directory.change_account_settings("alice@example.com", bad, replace=False),
        lambda: directory.change_account_defaults("example.com", bad, replace=True),
        lambda: directory.change_domain_settings("example.com", bad, replace=False),
        lambda: directory.change_server_account_defaults(bad, replace=False),
        lambda: directory.change_server_domain_defaults(bad, replace=True),
    ):
        with pytest.raises(InvalidSettings, match="must be a dictionary|has an empty key"):
            change()
    assert snapshot(store) == before


SETTING_KEYS = st.sampled_from(["A", "B", "C", "RealName", "MaxSignalContacts", "AccessModes"])
SETTING_VALUES = st.text(alphabet="xyz019", min_size=1, max_size=3)
LAYER = st.dictionaries(SETTING_KEYS, SETTING_VALUES, max_size=6)


@settings(max_examples=60, deadline=None)
@given(server=LAYER, domain=LAYER, account=LAYER)
def test_effective_value_comes_from_the_most_specific_level(server, domain, account):
    directory = Directory(MemoryStore(), derive=FAST_DERIVE)
    directory.create_domain("example.com")
    directory.create_account("alice@example.com", account)
    directory.change_account_defaults("example.com", domain, replace=True)
    directory.change_server_account_defaults(server, replace=True)
    found = directory.account_effective_settings("alice@example.com")
    levels = [account, domain, server, BUILTIN_ACCOUNT_SETTINGS]
    keys = set().union(*levels)
    assert set(found) == keys
    for key in keys:
        assert found[key] == next(level[key] for level in levels if key in level)


@settings(max_examples=60, deadline=None)
@given(
    start=LAYER,
    changes=st.dictionaries(SETTING_KEYS, st.one_of(SETTING_VALUES, st.just("default"))),
)
def test_update_result_is_the_merge_without_defaulted_keys(start, changes):
    directory = Directory(MemoryStore(), derive=FAST_DERIVE)
    directory.create_domain("example.com")
    directory.create_account("alice@example.com", start)
    directory.change_account_settings("alice@example.com", changes, replace=False)
    expected = {
        key: value
        for key, value in {**start, **changes}.items()
        if changes.get(key) != "default"
    }
    assert directory.account_settings("alice@example.com") == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("YES", True), ("yes", True), ("TRUE", True), ("1", True), (True, True),
        ("NO", False), ("", False), ("0", False), (False, False), (1, False), (None, False),
        (["YES"], False),
    ],
)
def test_flag_values(value, expected):
    assert is_yes(value) is expected


# -- refusals change nothing -------------------------------------------------------


REFUSALS = [
    ("create_domain", lambda d: d.create_domain("example.org"), NameInUse),
    ("create_domain_bad_settings", lambda d: d.create_domain("x.example", ["a"]), InvalidSettings),
    ("delete_main_domain", lambda d: d.delete_domain("example.com", force=True), ObjectInUse),
    ("delete_busy_domain", lambda d: d.delete_domain("example.org"), ObjectInUse),
    ("alias_is_domain", lambda d: d.set_domain_aliases("example.com", ["example.org"]), NameInUse),
    ("alias_of_other", lambda d: d.set_domain_aliases("example.com", ["org.example"]), NameInUse),
    ("bad_alias", lambda d: d.set_domain_aliases("example.com", ["ok.example", "bad_"]), InvalidName),
    ("dup_account", lambda d: d.create_account("alice@example.com"), NameInUse),
    ("account_on_alias", lambda d: d.create_account("al@example.com"), NameInUse),
    ("bad_password", lambda d: d.create_account("new@example.com", {"Password": ""}), InvalidSettings),
    ("set_bad_password", lambda d: d.set_password("alice@example.com", ""), InvalidSettings),
    (
        "update_bad_password",
        lambda d: d.change_account_settings("alice@example.com", {"X": "1", "Password": ("p",)}, False),
        InvalidSettings,
    ),
    ("rename_taken", lambda d: d.rename_account("alice@example.com", "bob@example.org"), NameInUse),
    (
        "rename_alias_clash",
        lambda d: d.rename_account("alice@example.com", "alice@example.org"),
        NameInUse,
    ),
    ("delete_unknown", lambda d: d.delete_account("ghost@example.com"), UnknownObject),
    ("alias_taken", lambda d: d.set_account_aliases("alice@example.com", ["new", "fwd"]), NameInUse),
    ("telnum_taken", lambda d: d.set_account_telnums("bob@example.org", ["999", "100"]), NameInUse),
    ("bad_telnum", lambda d: d.set_account_telnums("alice@example.com", ["999", "x"]), InvalidName),
    ("dup_forwarder", lambda d: d.create_forwarder("fwd@example.com", "y@z.example"), NameInUse),
    ("delete_unknown_forwarder", lambda d: d.delete_forwarder("alice@example.com"), UnknownObject),
    ("dup_group", lambda d: d.create_group("team@example.com"), NameInUse),
    ("bad_members", lambda d: d.set_group("team@example.com", {"Members": "x"}), InvalidSettings),
    ("delete_unknown_group", lambda d: d.delete_group("ghost@example.com"), UnknownObject),
    ("domain_defaults", lambda d: d.change_account_defaults("nowhere.example", {}, True), UnknownObject),
]


@pytest.mark.parametrize("refusal, error", [(r[1], r[2]) for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_every_refusal_leaves_the_store_unchanged(directory, store, refusal, error):
    directory.create_account("alice@example.com", {"Password": "pw", "X": "1"})
    directory.set_account_aliases("alice@example.com", ["al", "bob"])
    directory.set_account_telnums("alice@example.com", ["100"])
    directory.create_account("bob@example.org")
    directory.set_domain_aliases("example.org", ["org.example"])
    directory.create_forwarder("fwd@example.com", "x@elsewhere.example")
    directory.create_group("team@example.com", {"Members": ["alice"]})
    before = snapshot(store)
    generation = store.generation()
    with pytest.raises(error) as caught:
        refusal(directory)
    assert isinstance(caught.value, DirectoryError)
    assert str(caught.value)
    assert snapshot(store) == before
    assert store.generation() == generation


# -- two processes sharing one data directory ---------------------------------------


def test_directory_sees_changes_made_through_another_store_at_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    server_store, tool_store = SQLiteStore(path), SQLiteStore(path)
    try:
        server = Directory(server_store, derive=FAST_DERIVE)
        tool = Directory(tool_store, derive=FAST_DERIVE)
        tool.create_domain("example.com")
        assert server.main_domain() == "example.com"
        tool.create_account("alice@example.com", {"Password": "pw"})
        tool.set_account_telnums("alice@example.com", ["100"])
        assert server.resolve_account("alice") == "alice@example.com"
        assert check_plain(server.password_secrets("alice@example.com"), "pw")
        # A telnum taken through one store is refused through the other.
        server.create_account("bob@example.com")
        with pytest.raises(NameInUse, match="telnum 100 already belongs to alice@example.com"):
            server.set_account_telnums("bob@example.com", ["100"])
    finally:
        server_store.close()
        tool_store.close()
