"""
Tests for communigate.sip.bindings, the registrar's location store, over a
MemoryStore and a SQLiteStore, with a Clock.
"""

import contextlib

import pytest
from twisted.internet.task import Clock

from communigate.sip.bindings import (
    Binding,
    BindingError,
    Bindings,
    ContactChange,
    InvalidRegistration,
    OutOfOrder,
    RegisterChanges,
    TooManyContacts,
)
from communigate.storage import MemoryStore, SQLiteStore

ALICE = "alice@example.com"
BOB = "bob@example.com"
START = 1_000_000.0
PHONE = ("udp", "203.0.113.7", 40123)
LISTENER = ("udp", "192.0.2.1", 5060)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = SQLiteStore(str(tmp_path / "bindings.sqlite"))
    yield opened
    opened.close()


@pytest.fixture
def clock():
    found = Clock()
    found.advance(START)
    return found


@pytest.fixture
def bindings(store, clock):
    found = Bindings(store, clock)
    yield found
    found.stop()


def register(bindings, aor, *contacts, call_id="call-1", cseq=1, **kwargs):
    """
    Apply a REGISTER; each contact is a ContactChange or (uri, expires).
    """
    changes = [c if isinstance(c, ContactChange) else ContactChange(*c) for c in contacts]
    return bindings.update(aor, RegisterChanges(call_id=call_id, cseq=cseq, contacts=changes, **kwargs))


def contacts_of(found):
    return [binding.contact for binding in found]


def records(store):
    return store.scan("sip-binding")


# -- adding, refreshing, removing ---------------------------------------------------------


def test_a_register_adds_a_binding_with_everything_it_carries(bindings, clock, store):
    found = register(
        bindings,
        ALICE,
        ContactChange(
            "sip:alice@10.0.0.5:5060;transport=udp;ob",
            3600,
            q=0.7,
            instance='"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
            reg_id=1,
            params=[("methods", '"INVITE,MESSAGE"'), ("+sip.ice", None)],
        ),
        call_id="abc@10.0.0.5",
        cseq=7,
        path=["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"],
        source=PHONE,
        local=LISTENER,
        nat=True,
        user_agent="Phone/1.0",
    )
    assert found == [
        Binding(
            aor=ALICE,
            contact="sip:alice@10.0.0.5:5060;transport=udp;ob",
            expires_at=START + 3600,
            q=0.7,
            call_id="abc@10.0.0.5",
            cseq=7,
            instance='"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
            reg_id=1,
            path=("<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"),
            source=PHONE,
            local=LISTENER,
            nat=True,
            user_agent="Phone/1.0",
            params=(("methods", '"INVITE,MESSAGE"'), ("+sip.ice", None)),
            updated_at=START,
        )
    ]
    assert bindings.lookup(ALICE) == found
    assert found[0].flow == ('"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"', 1)
    assert found[0].expires_in(START + 100) == 3500
    [(key, _)] = records(store)
    assert key.startswith(f"{ALICE}/")


def test_update_returns_every_binding_of_the_aor_not_just_the_new_one(bindings):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), call_id="desk")
    found = register(bindings, ALICE, ("sip:alice@10.0.0.2", 600), call_id="soft")
    assert sorted(contacts_of(found)) == ["sip:alice@10.0.0.1", "sip:alice@10.0.0.2"]
    assert bindings.count(ALICE) == 2
    assert bindings.count(BOB) == 0


def test_a_register_without_contacts_fetches_and_changes_nothing(bindings, store):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600))
    before = records(store)
    assert contacts_of(register(bindings, ALICE, call_id="other", cseq=1)) == ["sip:alice@10.0.0.1"]
    assert records(store) == before


def test_a_refresh_with_a_higher_cseq_extends_the_binding(bindings, clock):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), cseq=1)
    clock.advance(500)
    [binding] = register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), cseq=2)
    assert binding.expires_at == START + 500 + 600
    assert binding.cseq == 2
    clock.advance(200)
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:alice@10.0.0.1"]


def test_expires_zero_removes_that_contact_only(bindings, store):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), ("sip:alice@10.0.0.2", 600))
    found = register(bindings, ALICE, ("sip:alice@10.0.0.1", 0), cseq=2)
    assert contacts_of(found) == ["sip:alice@10.0.0.2"]
    assert len(records(store)) == 1


def test_expires_zero_for_an_unknown_contact_is_harmless(bindings):
    assert register(bindings, ALICE, ("sip:alice@10.0.0.9", 0)) == []


def test_star_removes_every_binding(bindings, store):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), call_id="a")
    register(bindings, ALICE, ("sip:alice@10.0.0.2", 600), call_id="b")
    register(bindings, BOB, ("sip:bob@10.0.0.3", 600))
    assert register(bindings, ALICE, ("*", 0), call_id="c") == []
    assert bindings.lookup(ALICE) == []
    assert [key.partition("/")[0] for key, _ in records(store)] == [BOB]


@pytest.mark.parametrize(
    ("contacts", "reason"),
    [
        ([("*", 0), ("sip:alice@10.0.0.1", 0)], "Contact * must be the only contact"),
        ([("sip:alice@10.0.0.1", 600), ("*", 0)], "Contact * must be the only contact"),
        ([("*", 3600)], "Contact * needs expires 0"),
    ],
)
def test_star_with_other_contacts_or_an_expiry_is_a_bad_request(bindings, contacts, reason):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600))
    with pytest.raises(InvalidRegistration) as caught:
        register(bindings, ALICE, *contacts, cseq=2)
    assert (caught.value.status, caught.value.reason) == (400, reason)
    assert bindings.count(ALICE) == 1


def test_star_with_the_same_call_id_and_an_old_cseq_is_out_of_order(bindings):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), cseq=5)
    with pytest.raises(OutOfOrder):
        register(bindings, ALICE, ("*", 0), cseq=5)
    assert bindings.count(ALICE) == 1
    assert register(bindings, ALICE, ("*", 0), cseq=6) == []


@pytest.mark.parametrize("cseq", [4, 5])
def test_same_call_id_and_a_cseq_not_above_is_out_of_order_and_changes_nothing(bindings, store, cseq):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), cseq=5)
    before = records(store)
    with pytest.raises(OutOfOrder) as caught:
        register(bindings, ALICE, ("sip:alice@10.0.0.2", 600), ("sip:alice@10.0.0.1", 0), cseq=cseq)
    assert caught.value.status == 500
    assert isinstance(caught.value, BindingError)
    # All or nothing: the new contact listed first was not added either.
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:alice@10.0.0.1"]
    assert records(store) == before


def test_another_call_id_replaces_the_binding_whatever_its_cseq(bindings):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), call_id="before-reboot", cseq=90)
    [binding] = register(bindings, ALICE, ("sip:alice@10.0.0.1", 300), call_id="after-reboot", cseq=1)
    assert (binding.call_id, binding.cseq, binding.expires_at) == ("after-reboot", 1, START + 300)


def test_a_contact_listed_twice_in_one_register_is_not_out_of_order_with_itself(bindings):
    found = register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), ("sip:alice@10.0.0.1", 60))
    assert [binding.expires_at for binding in found] == [START + 60]


def test_contacts_are_compared_as_given_by_default(bindings):
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600), ("sip:ALICE@10.0.0.1", 600))
    assert bindings.count(ALICE) == 2


def test_a_contact_key_function_decides_which_contacts_are_the_same(store, clock):
    bindings = Bindings(store, clock, contact_key=str.lower)
    register(bindings, ALICE, ("sip:alice@10.0.0.1", 600))
    [binding] = register(bindings, ALICE, ("sip:ALICE@10.0.0.1", 900), cseq=2)
    assert binding.contact == "sip:ALICE@10.0.0.1"
    assert len(records(store)) == 1


# -- RFC 5626 flows ------------------------------------------------------------------------

INSTANCE = '"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"'


def test_a_new_flow_of_the_same_instance_and_reg_id_replaces_the_old(bindings, store):
    register(
        bindings, ALICE, ContactChange("sip:alice@10.0.0.5:5060;ob", 600, instance=INSTANCE, reg_id=1),
        call_id="boot-1", source=PHONE,
    )
    found = register(
        bindings, ALICE, ContactChange("sip:alice@10.0.0.5:5099;ob", 600, instance=INSTANCE, reg_id=1),
        call_id="boot-2", source=("udp", "203.0.113.7", 50000),
    )
    assert contacts_of(found) == ["sip:alice@10.0.0.5:5099;ob"]
    assert found[0].source == ("udp", "203.0.113.7", 50000)
    assert len(records(store)) == 1
    assert bindings.remove_flow(PHONE) == []


def test_another_reg_id_of_the_same_instance_is_a_second_flow(bindings):
    register(bindings, ALICE, ContactChange("sip:alice@a;ob", 600, instance=INSTANCE, reg_id=1), call_id="x")
    found = register(bindings, ALICE, ContactChange("sip:alice@b;ob", 600, instance=INSTANCE, reg_id=2), call_id="y")
    assert sorted(contacts_of(found)) == ["sip:alice@a;ob", "sip:alice@b;ob"]


def test_a_flow_replacement_with_an_old_cseq_of_the_same_call_id_is_out_of_order(bindings):
    register(bindings, ALICE, ContactChange("sip:alice@a;ob", 600, instance=INSTANCE, reg_id=1), cseq=3)
    with pytest.raises(OutOfOrder):
        register(bindings, ALICE, ContactChange("sip:alice@b;ob", 600, instance=INSTANCE, reg_id=1), cseq=2)
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:alice@a;ob"]


def test_reg_id_without_an_instance_is_ignored(bindings):
    [binding] = register(bindings, ALICE, ContactChange("sip:alice@a", 600, reg_id=1))
    assert binding.reg_id is None and binding.flow is None
    found = register(bindings, ALICE, ContactChange("sip:alice@b", 600, reg_id=1), call_id="other")
    assert bindings.count(ALICE) == 2 == len(found)


def test_a_flow_replacing_its_predecessor_is_allowed_at_the_cap(store, clock):
    bindings = Bindings(store, clock, max_per_aor_setting=lambda aor: 1)
    register(bindings, ALICE, ContactChange("sip:alice@a;ob", 600, instance=INSTANCE, reg_id=1), call_id="x")
    found = register(bindings, ALICE, ContactChange("sip:alice@b;ob", 600, instance=INSTANCE, reg_id=1), call_id="y")
    assert contacts_of(found) == ["sip:alice@b;ob"]


# -- order, expiry --------------------------------------------------------------------------


def test_lookup_orders_by_q_then_most_recent(bindings, clock):
    register(bindings, ALICE, ContactChange("sip:low@x", 600, q=0.1), call_id="1")
    clock.advance(1)
    register(bindings, ALICE, ContactChange("sip:old-high@x", 600, q=0.9), call_id="2")
    clock.advance(1)
    register(bindings, ALICE, ContactChange("sip:new-high@x", 600, q=0.9), call_id="3")
    register(bindings, ALICE, ContactChange("sip:default@x", 600), call_id="4")
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:default@x", "sip:new-high@x", "sip:old-high@x", "sip:low@x"]


@pytest.mark.parametrize("q", [-0.1, 1.01])
def test_q_outside_zero_to_one_is_refused(q):
    with pytest.raises(ValueError, match="q must be between 0 and 1"):
        ContactChange("sip:a@x", 60, q=q)


def test_negative_expires_is_refused():
    with pytest.raises(ValueError, match="expires"):
        ContactChange("sip:a@x", -1)


def test_expired_bindings_are_never_returned_and_the_timer_purges_them(bindings, clock, store):
    register(bindings, ALICE, ("sip:short@x", 60), ("sip:long@x", 600))
    clock.advance(59.9)
    assert bindings.count(ALICE) == 2
    clock.advance(0.1)
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:long@x"]
    assert len(records(store)) == 1
    clock.advance(540)
    assert bindings.lookup(ALICE) == []
    assert records(store) == []
    assert bindings.all_count() == 0
    assert bindings.memory_stats() == {"bindings": 0, "aors": 0, "flows": 0, "expiry_queue": 0}
    assert clock.getDelayedCalls() == []


def test_a_refreshed_binding_is_not_purged_at_its_old_expiry(bindings, clock):
    register(bindings, ALICE, ("sip:alice@x", 60), cseq=1)
    clock.advance(50)
    register(bindings, ALICE, ("sip:alice@x", 60), cseq=2)
    clock.advance(20)
    assert bindings.count(ALICE) == 1
    clock.advance(40)
    assert bindings.count(ALICE) == 0


def test_purge_drops_what_expired_even_without_the_timer(bindings, clock, store):
    register(bindings, ALICE, ("sip:alice@x", 60))
    bindings.stop()
    clock.advance(61)
    assert bindings.lookup(ALICE) == []
    assert len(records(store)) == 1
    assert bindings.purge() == 1
    assert records(store) == []
    assert bindings.purge() == 0


def test_an_expired_binding_counts_as_gone_when_a_new_register_arrives(bindings, clock, store):
    register(bindings, ALICE, ("sip:a@x", 60), call_id="1")
    bindings.stop()
    clock.advance(61)
    found = register(bindings, ALICE, ("sip:b@x", 60), call_id="2")
    assert contacts_of(found) == ["sip:b@x"]
    assert len(records(store)) == 1


# -- the cap ----------------------------------------------------------------------------------


def test_over_the_cap_a_new_contact_is_refused_and_nothing_changes(store, clock):
    bindings = Bindings(store, clock, max_per_aor_setting=lambda aor: 2)
    register(bindings, ALICE, ("sip:a@x", 600), ("sip:b@x", 600))
    with pytest.raises(TooManyContacts) as caught:
        register(bindings, ALICE, ("sip:a@x", 900), ("sip:c@x", 600), cseq=2)
    assert caught.value.status == 403
    assert caught.value.reason == "Too many registered contacts (MaxSignalContacts is 2)"
    assert {b.contact: b.expires_at for b in bindings.lookup(ALICE)} == {
        "sip:a@x": START + 600,
        "sip:b@x": START + 600,
    }
    # A swap that keeps the count is fine.
    found = register(bindings, ALICE, ("sip:b@x", 0), ("sip:c@x", 600), cseq=3)
    assert sorted(contacts_of(found)) == ["sip:a@x", "sip:c@x"]


def test_the_cap_is_per_aor_and_read_at_each_register(store, clock):
    caps = {ALICE: "1", BOB: 3}
    bindings = Bindings(store, clock, max_per_aor_setting=caps.__getitem__)
    register(bindings, ALICE, ("sip:a@x", 600))
    register(bindings, BOB, ("sip:a@x", 600), ("sip:b@x", 600), ("sip:c@x", 600))
    with pytest.raises(TooManyContacts):
        register(bindings, ALICE, ("sip:b@x", 600), call_id="2")
    caps[ALICE] = "unlimited"
    assert len(register(bindings, ALICE, ("sip:b@x", 600), call_id="2")) == 2


def test_lowering_the_cap_keeps_registered_phones_refreshing(store, clock):
    caps = {ALICE: 3}
    bindings = Bindings(store, clock, max_per_aor_setting=caps.__getitem__)
    register(bindings, ALICE, ("sip:a@x", 600), ("sip:b@x", 600), ("sip:c@x", 600))
    caps[ALICE] = 1
    assert len(register(bindings, ALICE, ("sip:a@x", 600), ("sip:b@x", 600), cseq=2)) == 3
    assert len(register(bindings, ALICE, ("sip:c@x", 0), cseq=3)) == 2
    with pytest.raises(TooManyContacts):
        register(bindings, ALICE, ("sip:c@x", 600), cseq=4)


def test_a_cap_of_zero_refuses_every_registration_but_allows_removal(store, clock):
    bindings = Bindings(store, clock, max_per_aor_setting=lambda aor: None)
    register(bindings, ALICE, ("sip:a@x", 600))
    bindings_zero = Bindings(store, clock, max_per_aor_setting=lambda aor: 0)
    bindings_zero.load()
    with pytest.raises(TooManyContacts):
        register(bindings_zero, ALICE, ("sip:b@x", 600), call_id="2")
    assert register(bindings_zero, ALICE, ("*", 0), call_id="2") == []


@pytest.mark.parametrize("value", ["ten", "-1", -1, 1.5, True, ""])
def test_a_bad_cap_setting_is_an_error_naming_the_setting(store, clock, value):
    bindings = Bindings(store, clock, max_per_aor_setting=lambda aor: value)
    with pytest.raises(ValueError, match=r"MaxSignalContacts of alice@example.com must be"):
        register(bindings, ALICE, ("sip:a@x", 600))


# -- NAT flows, removal -----------------------------------------------------------------------


def test_remove_flow_drops_the_bindings_reached_through_that_flow_only(bindings, store):
    register(bindings, ALICE, ("sip:alice@10.0.0.5", 600), source=PHONE, local=LISTENER, nat=True)
    register(bindings, BOB, ("sip:bob@10.0.0.6", 600), source=PHONE, local=LISTENER, nat=True)
    register(bindings, ALICE, ("sip:alice@198.51.100.1", 600), call_id="2", source=("udp", "198.51.100.1", 5060))
    removed = bindings.remove_flow(("UDP", "203.0.113.7", 40123))
    assert sorted(b.aor for b in removed) == [ALICE, BOB]
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:alice@198.51.100.1"]
    assert bindings.lookup(BOB) == []
    assert len(records(store)) == 1
    assert bindings.memory_stats()["flows"] == 1
    assert bindings.remove_flow(PHONE) == []


def test_remove_flow_can_be_limited_to_the_local_address(bindings):
    register(bindings, ALICE, ("sip:a@x", 600), source=PHONE, local=LISTENER)
    register(bindings, BOB, ("sip:b@x", 600), source=PHONE, local=("udp", "192.0.2.2", 5060))
    assert [b.aor for b in bindings.remove_flow(PHONE, local=("udp", "192.0.2.2", 5060))] == [BOB]
    assert bindings.count(ALICE) == 1


def test_a_refresh_from_a_new_source_moves_the_binding_to_that_flow(bindings):
    register(bindings, ALICE, ("sip:a@x", 600), source=PHONE, cseq=1)
    register(bindings, ALICE, ("sip:a@x", 600), source=("udp", "203.0.113.7", 40999), cseq=2)
    assert bindings.remove_flow(PHONE) == []
    assert [b.aor for b in bindings.remove_flow(("udp", "203.0.113.7", 40999))] == [ALICE]


def test_remove_drops_every_binding_of_an_aor(bindings, store):
    register(bindings, ALICE, ("sip:a@x", 600), ("sip:b@x", 600))
    register(bindings, BOB, ("sip:c@x", 600))
    assert sorted(contacts_of(bindings.remove(ALICE))) == ["sip:a@x", "sip:b@x"]
    assert bindings.aors() == [BOB]
    assert len(records(store)) == 1
    assert bindings.remove(ALICE) == []


# -- persistence -------------------------------------------------------------------------------


def test_bindings_survive_a_restart_on_the_same_sqlite_file_without_the_expired(tmp_path, clock):
    path = str(tmp_path / "restart.sqlite")
    first_store = SQLiteStore(path)
    first = Bindings(first_store, clock)
    register(
        first, ALICE,
        ContactChange("sip:alice@10.0.0.5;ob", 600, q=0.5, instance=INSTANCE, reg_id=1, params=[("+sip.ice", None)]),
        path=["<sip:edge.example.com;lr>"], source=PHONE, local=LISTENER, nat=True, user_agent="Jäsøn's phone",
    )
    register(first, ALICE, ("sip:alice@10.0.0.6", 60), call_id="2")
    register(first, BOB, ("sip:bob@10.0.0.7", 120))
    expected = first.lookup(ALICE)[-1]  # q=0.5 sorts after the q=1 one
    first.stop()
    first_store.close()

    clock.advance(90)
    second_store = SQLiteStore(path)
    second = Bindings(second_store, clock)
    assert second.lookup(ALICE) == []
    assert second.load() == 2
    assert second.lookup(ALICE) == [expected]
    assert contacts_of(second.lookup(BOB)) == ["sip:bob@10.0.0.7"]
    assert len(records(second_store)) == 2
    # The timer runs again after a load.
    clock.advance(31)
    assert second.lookup(BOB) == []
    assert len(records(second_store)) == 1
    assert [b.aor for b in second.remove_flow(PHONE)] == [ALICE]
    second.stop()
    second_store.close()


def test_load_drops_damaged_records(store, clock):
    bindings = Bindings(store, clock)
    register(bindings, ALICE, ("sip:a@x", 600))
    store.put("sip-binding", f"{ALICE}/junk", "{not closed")
    store.put("sip-binding", f"{ALICE}/nofields", "{AOR = x;}")
    store.put("sip-binding", f"{ALICE}/badq", '{AOR = x; Contact = y; Expires = "2000000"; Q = "7";}')
    store.put("sip-binding", f"{ALICE}/nan", '{AOR = x; Contact = y; Expires = nan;}')
    store.put("sip-binding", f"{ALICE}/port", '{AOR = x; Contact = y; Expires = "2000000"; Source = (udp, h, p);}')
    restarted = Bindings(store, clock)
    assert restarted.load() == 1
    assert len(records(store)) == 1


def test_load_refiles_records_written_under_another_contact_key(store, clock):
    register(Bindings(store, clock), ALICE, ("sip:A@x", 600))
    [(old_key, _)] = records(store)
    restarted = Bindings(store, clock, contact_key=str.lower)
    assert restarted.load() == 1
    [(new_key, _)] = records(store)
    assert new_key != old_key
    [binding] = register(restarted, ALICE, ("sip:a@x", 600), cseq=2)
    assert binding.contact == "sip:a@x"


class CountingStore:
    """
    A store that counts reads and can be told to fail writes.
    """

    def __init__(self, inner):
        self.inner = inner
        self.reads = 0
        self.fail_writes = False

    def transaction(self):
        return self.inner.transaction()

    def get(self, kind, key):
        self.reads += 1
        return self.inner.get(kind, key)

    def scan(self, kind, prefix=""):
        self.reads += 1
        return self.inner.scan(kind, prefix)

    def put(self, kind, key, value):
        if self.fail_writes:
            raise OSError("disk full")
        self.inner.put(kind, key, value)

    def delete(self, kind, key):
        if self.fail_writes:
            raise OSError("disk full")
        return self.inner.delete(kind, key)


def test_lookups_never_read_the_store(clock):
    store = CountingStore(MemoryStore())
    bindings = Bindings(store, clock)
    register(bindings, ALICE, ("sip:a@x", 600))
    for _ in range(10):
        bindings.lookup(ALICE)
        bindings.count(ALICE)
    assert store.reads == 0


def test_a_store_failure_leaves_the_bindings_as_they_were(clock):
    store = CountingStore(MemoryStore())
    bindings = Bindings(store, clock)
    register(bindings, ALICE, ("sip:a@x", 600))
    store.fail_writes = True
    with pytest.raises(OSError):
        register(bindings, ALICE, ("sip:a@x", 0), ("sip:b@x", 600), cseq=2)
    assert contacts_of(bindings.lookup(ALICE)) == ["sip:a@x"]
    assert store.inner.count("sip-binding") == 1


def test_text_that_is_not_utf8_is_a_bad_request(bindings):
    with pytest.raises(InvalidRegistration, match="not valid UTF-8"):
        register(bindings, ALICE, ("sip:a@\udcff", 600))
    with pytest.raises(InvalidRegistration, match="not valid UTF-8"):
        register(bindings, ALICE, ("sip:a@x", 600), user_agent="\ud800")


# -- bounded memory ----------------------------------------------------------------------------


def test_memory_stays_bounded_under_registration_churn(store, clock):
    bindings = Bindings(store, clock, max_per_aor_setting=lambda aor: 3)
    aors = [f"user{n}@example.com" for n in range(20)]
    for round_ in range(150):
        for n, aor in enumerate(aors):
            port = 20000 + (round_ * 7 + n) % 50
            contact = f"sip:{n}@10.0.0.{round_ % 4}:{port}"
            with contextlib.suppress(TooManyContacts):
                register(
                    bindings, aor, (contact, 30 + n), call_id=f"{aor}-{round_ % 5}", cseq=round_ + 1,
                    source=("udp", "203.0.113.9", port),
                )
            if round_ % 3 == 0:
                register(bindings, aor, (contact, 0), call_id="remover", cseq=round_ + 1)
        clock.advance(5)
        stats = bindings.memory_stats()
        assert stats["bindings"] <= 3 * len(aors)
        assert stats["expiry_queue"] <= 2 * stats["bindings"] + 64
        assert stats["flows"] <= stats["bindings"]
        assert store.count("sip-binding") == stats["bindings"]
    clock.advance(100)
    assert bindings.memory_stats() == {"bindings": 0, "aors": 0, "flows": 0, "expiry_queue": 0}
    assert store.count("sip-binding") == 0


# -- batched writes ---------------------------------------------------------------------


def test_with_a_write_delay_changes_reach_the_store_in_one_batch(store, clock):
    """
    A running server batches binding writes: nothing is written until the
    delay passes, then every change at once, the last change of a record
    winning; a reload sees exactly what memory held.
    """
    batched = Bindings(store, clock, write_delay=0.05)
    register(batched, ALICE, ("sip:alice@10.0.0.5", 3600))
    register(batched, BOB, ("sip:bob@10.0.0.6", 3600))
    register(batched, ALICE, ("sip:alice@10.0.0.5", 0), cseq=2)
    assert records(store) == []
    assert contacts_of(batched.lookup(BOB)) == ["sip:bob@10.0.0.6"]
    clock.advance(0.05)
    assert len(records(store)) == 1
    again = Bindings(store, clock)
    assert again.load() == 1
    assert contacts_of(again.lookup(BOB)) == ["sip:bob@10.0.0.6"] and again.lookup(ALICE) == []
    batched.stop()
    again.stop()


def test_flush_writes_what_is_pending_at_once(store, clock):
    batched = Bindings(store, clock, write_delay=10)
    register(batched, ALICE, ("sip:alice@10.0.0.5", 3600))
    assert batched.flush() == 1
    assert len(records(store)) == 1
    assert batched.flush() == 0
    assert clock.getDelayedCalls() == [] or all(
        call.getTime() > clock.seconds() + 10 for call in clock.getDelayedCalls()
    )
    batched.stop()


class FailingCommits(MemoryStore):
    """A store whose commits fail while C{broken} is set."""

    broken = True

    @contextlib.contextmanager
    def transaction(self):
        if self.broken:
            raise OSError("disk full")
        with super().transaction():
            yield


def test_a_failed_batch_stays_pending_and_is_tried_again(clock):
    store = FailingCommits()
    batched = Bindings(store, clock, write_delay=0.05)
    register(batched, ALICE, ("sip:alice@10.0.0.5", 3600))
    clock.advance(0.05)
    assert records(store) == []
    assert contacts_of(batched.lookup(ALICE)) == ["sip:alice@10.0.0.5"]
    store.broken = False
    clock.advance(1.0)
    assert len(records(store)) == 1
    batched.stop()


def test_records_written_as_data_format_text_are_still_read(store, clock):
    """
    Bindings files from before the JSON records hold CommuniGate data
    format dictionaries; they load as before.
    """
    from communigate.formats import cgdata

    record = {
        "AOR": ALICE, "Contact": "sip:alice@10.0.0.5", "Expires": repr(START + 600), "Q": "1.0",
        "CallID": "c", "CSeq": 3, "Source": ["udp", "203.0.113.7", 40123],
    }
    with store.transaction():
        store.put("sip-binding", "alice@example.com/old-key", cgdata.dumps(record))
    loaded = Bindings(store, clock)
    assert loaded.load() == 1
    (binding,) = loaded.lookup(ALICE)
    assert binding.cseq == 3 and binding.source == ("udp", "203.0.113.7", 40123)
    assert all(text.startswith('{"') for _, text in records(store))
    loaded.stop()


def test_bindings_share_their_register_s_addresses_and_one_copy_of_each_listener(bindings):
    source = ("udp", "203.0.113.9", 40000)
    register(bindings, "alice@example.com", ContactChange("sip:a@h", 60),
             source=source, local=tuple(["udp", "192.0.2.1", 5060]))
    register(bindings, "bob@example.com", ContactChange("sip:b@h", 60), call_id="call-2",
             source=("UDP", "203.0.113.9", 40001), local=tuple(["udp", "192.0.2.1", 5060]))
    (alice,) = bindings.lookup("alice@example.com")
    (bob,) = bindings.lookup("bob@example.com")
    assert alice.source is source
    assert bob.source == ("udp", "203.0.113.9", 40001)
    assert alice.local == bob.local == ("udp", "192.0.2.1", 5060) and alice.local is bob.local
