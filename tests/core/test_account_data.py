"""
What is kept by account name follows the account: deleted with it (a new
account of the same name starts empty), moved when it is renamed.
"""

import os

import pytest
from twisted.internet.task import Clock
from twisted.words.xish import domish
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.interfaces import IAccountWatcher
from communigate.pbx.voicemail import Mailbox, Mailboxes
from communigate.presence.mwi import MessageCounts
from communigate.server import build_core
from communigate.sip.bindings import Bindings, ContactChange, RegisterChanges
from communigate.sip.rsip import RSIPService
from communigate.storage import MemoryStore
from communigate.xmpp.offline import OfflineMessages

ALICE = "alice@example.com"
CAROL = "carol@example.com"


@implementer(IAccountWatcher)
class Recorder:
    def __init__(self):
        self.heard = []

    def account_removed(self, address):
        self.heard.append(("removed", address))

    def account_renamed(self, old, new):
        self.heard.append(("renamed", old, new))


class Broken:
    def account_removed(self, address):
        raise RuntimeError("watcher bug")

    def account_renamed(self, old, new):
        raise RuntimeError("watcher bug")


@pytest.fixture
def core():
    built = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), None)
    built.directory.create_domain("example.com")
    built.directory.create_account("alice", {"Password": "pw"})
    return built


def cli(core, line):
    result = core.interpreter.run(CommandContext(None, None, trusted=True), line)
    assert result.ok, f"{line}: {result.error}"


def test_watchers_hear_deletions_and_renames_after_they_are_committed(core):
    recorder = Recorder()
    core.directory.watch_accounts(Broken())
    core.directory.watch_accounts(recorder)
    core.directory.rename_account(ALICE, CAROL)
    core.directory.rename_account(CAROL, CAROL)
    core.directory.delete_account(CAROL)
    # The broken watcher is logged; the change stands and the others hear it.
    assert recorder.heard == [("renamed", ALICE, CAROL), ("removed", CAROL)]
    assert core.directory.resolve_account(CAROL) is None


def test_a_forced_domain_deletion_tells_of_each_account_in_it(core):
    recorder = Recorder()
    core.directory.create_domain("other.test")
    core.directory.create_account("dan@other.test", {"Password": "pw"})
    core.directory.create_account("eve@other.test", {"Password": "pw"})
    core.directory.watch_accounts(recorder)
    core.directory.delete_domain("other.test", force=True)
    assert sorted(recorder.heard) == [("removed", "dan@other.test"), ("removed", "eve@other.test")]


def test_a_refused_deletion_tells_nobody(core):
    recorder = Recorder()
    core.directory.watch_accounts(recorder)
    with pytest.raises(Exception):
        core.directory.delete_account("nobody@example.com")
    assert recorder.heard == []


def test_a_new_account_with_a_deleted_ones_name_inherits_no_roster_or_counts(core):
    verifyObject(IAccountWatcher, core.roster)
    verifyObject(IAccountWatcher, core.message_waiting)
    core.roster.set_item(ALICE, "bob@example.com", "Bob")
    core.message_waiting.set_counts(ALICE, MessageCounts(new=2, old=1))
    cli(core, "DELETEACCOUNT alice@example.com")
    core.directory.create_account("alice", {"Password": "other"})
    assert core.roster.items(ALICE) == []
    assert core.message_waiting.counts(ALICE) == MessageCounts()


def test_a_renamed_account_keeps_its_roster_and_counts_under_the_new_name(core):
    core.roster.set_item(ALICE, "bob@example.com", "Bob")
    core.message_waiting.set_counts(ALICE, MessageCounts(new=2))
    heard = []
    core.message_waiting.watch(CAROL, heard.append)
    cli(core, "RENAMEACCOUNT alice@example.com INTO carol@example.com")
    assert [item.contact for item in core.roster.items(CAROL)] == ["bob@example.com"]
    assert core.roster.items(ALICE) == []
    assert core.message_waiting.counts(CAROL) == MessageCounts(new=2)
    assert core.message_waiting.counts(ALICE) == MessageCounts()
    assert heard[-1] == MessageCounts(new=2)


def message(text):
    element = domish.Element(("jabber:client", "message"))
    element.addElement("body", content=text)
    return element


def test_offline_messages_go_with_a_deleted_account_and_follow_a_renamed_one():
    store, clock = MemoryStore(), Clock()
    offline = OfflineMessages(store, clock, lambda: 100)
    verifyObject(IAccountWatcher, offline)
    offline.store(ALICE, message("one"))
    offline.store(ALICE, message("two"))
    offline.store("bob@example.com", message("bob's"))
    offline.account_renamed(ALICE, CAROL)
    assert offline.count(ALICE) == 0
    assert [str(e.body) for e in offline.take(CAROL, "example.com")] == ["one", "two"]
    offline.account_removed("bob@example.com")
    assert offline.count("bob@example.com") == 0


class Sender:
    def __init__(self):
        self.sent = []

    def send_register(self, domain, user, build, on_response, on_failure):
        self.sent.append(domain)


def test_registrations_out_stop_with_a_deleted_account_and_move_with_a_renamed_one():
    clock, sender = Clock(), Sender()
    service = RSIPService(MemoryStore(), clock, sender, lambda account: True)
    verifyObject(IAccountWatcher, service)
    service.set(ALICE, {"p1": {"domain": "provider.test", "authName": "a", "password": "p"}})
    service.account_renamed(ALICE, CAROL)
    assert service.records.load(ALICE) == {}
    assert [status["account"] for status in service.statuses()] == [CAROL]
    assert list(service.records.load(CAROL)) == ["p1"]
    service.account_removed(CAROL)
    assert service.statuses() == [] and service.records.accounts() == []


def test_phone_bindings_are_dropped_when_their_account_is_deleted_or_renamed():
    store, clock = MemoryStore(), Clock()
    bindings = Bindings(store, clock)
    verifyObject(IAccountWatcher, bindings)
    for aor in (ALICE, "bob@example.com"):
        bindings.update(aor, RegisterChanges(call_id="c", cseq=1, contacts=[
            ContactChange(f"sip:{aor.partition('@')[0]}@192.0.2.1", 3600)]))
    bindings.account_renamed(ALICE, CAROL)
    bindings.account_removed("bob@example.com")
    bindings.flush()
    assert bindings.lookup(ALICE) == [] and bindings.lookup("bob@example.com") == []
    assert store.count("sip-binding") == 0
    bindings.stop()


def test_a_deleted_accounts_voice_mailbox_is_removed_and_a_renamed_ones_moves(tmp_path):
    root = str(tmp_path)
    mailboxes = Mailboxes(root)
    verifyObject(IAccountWatcher, mailboxes)
    Mailbox(root, ALICE).store(b"RIFF alice", 1.0)
    Mailbox(root, "bob@example.com").store(b"RIFF bob", 1.0)
    mailboxes.account_renamed(ALICE, CAROL)
    assert Mailbox(root, ALICE).messages() == []
    assert len(Mailbox(root, CAROL).messages()) == 1
    mailboxes.account_removed("bob@example.com")
    assert not os.path.exists(Mailbox(root, "bob@example.com").path)
    mailboxes.account_removed("nobody@example.com")


def test_a_rename_onto_an_existing_mailbox_never_merges_them(tmp_path):
    root = str(tmp_path)
    Mailbox(root, ALICE).store(b"RIFF alice", 1.0)
    Mailbox(root, CAROL).store(b"RIFF stale", 2.0)
    Mailboxes(root).account_renamed(ALICE, CAROL)
    assert len(Mailbox(root, ALICE).messages()) == 1
    assert len(Mailbox(root, CAROL).messages()) == 1


def test_watchers_hear_of_changes_in_a_transaction_when_it_commits_and_never_if_it_rolls_back(core):
    recorder = Recorder()
    core.directory.watch_accounts(recorder)
    core.directory.create_account("bob", {"Password": "pw"})
    with pytest.raises(RuntimeError):
        with core.directory.transaction():
            core.directory.delete_account("bob@example.com")
            assert recorder.heard == []
            raise RuntimeError("changed my mind")
    assert recorder.heard == [] and core.directory.resolve_account("bob@example.com") is not None
    with core.directory.transaction():
        core.directory.delete_account("bob@example.com")
        core.directory.rename_account(ALICE, CAROL)
        assert recorder.heard == []
    assert recorder.heard == [("removed", "bob@example.com"), ("renamed", ALICE, CAROL)]
