"""
Server-wide settings records: explicit values only, checked whole before
anything is written, parsed once per change.
"""

import pytest
from hypothesis import given, strategies as st
from twisted.internet.task import Clock

from communigate.core.server_settings import CachedSettings, SettingsRecord
from communigate.storage import MemoryStore

RECORD = SettingsRecord("test-settings", {"Size": "10", "Name": ""})


def parse(every):
    size = int(every["Size"])
    if size < 0:
        raise ValueError(f"Size must not be negative, not {size}")
    return (size, every["Name"])


def test_only_values_that_differ_from_the_built_in_ones_are_stored():
    store = MemoryStore()
    every, parsed = RECORD.change(store, {"Size": "12", "Name": ""}, parse)
    assert every == {"Size": "12", "Name": ""} and parsed == (12, "")
    assert RECORD.explicit(store) == {"Size": "12"}
    RECORD.change(store, {"Size": "default"}, parse)
    assert RECORD.explicit(store) == {} and RECORD.effective(store) == {"Size": "10", "Name": ""}


def test_a_change_that_does_not_parse_writes_nothing():
    store = MemoryStore()
    RECORD.change(store, {"Name": "kept"}, parse)
    with pytest.raises(ValueError, match="negative"):
        RECORD.change(store, {"Size": "-1", "Name": "lost"}, parse)
    assert RECORD.explicit(store) == {"Name": "kept"}


def test_replacing_drops_what_is_not_given():
    store = MemoryStore()
    RECORD.change(store, {"Name": "x", "Size": "3"}, parse)
    RECORD.change(store, {"Size": "4"}, parse, merge=False)
    assert RECORD.explicit(store) == {"Size": "4"}


def test_the_cache_parses_once_per_change_and_sees_other_writers_within_recheck():
    store, clock = MemoryStore(), Clock()
    parsed = []

    def counting(every):
        parsed.append(every)
        return parse(every)

    cache = CachedSettings(store, RECORD, counting, (10, ""), what="test settings", clock=clock, recheck=1.0)
    assert cache.current == (10, "") and len(parsed) == 1
    store.put("unrelated", "k", "v")           # the generation moves; the record does not
    clock.advance(1)
    assert cache.current == (10, "") and len(parsed) == 1
    RECORD.change(store, {"Size": "7"}, parse)  # another process, say the admin tool
    assert cache.current == (10, "")           # not looked at before recheck
    clock.advance(1)
    assert cache.current == (7, "")
    assert cache.change({"Name": "here"}) == (7, "here")   # in force at once
    assert cache.current == (7, "here") and cache.settings() == {"Size": "7", "Name": "here"}


def test_a_record_edited_by_hand_into_nonsense_keeps_what_works():
    store = MemoryStore()
    cache = CachedSettings(store, RECORD, parse, (10, ""), what="test settings")
    RECORD.change(store, {"Size": "5"}, parse)
    assert cache.current == (5, "")
    store.put("server", "test-settings", "{Size = -3;}")
    assert cache.current == (5, "")


@given(st.dictionaries(st.sampled_from(["Size", "Name"]), st.sampled_from(["default", "0", "1", "", "x"])))
def test_whatever_is_changed_the_record_holds_no_built_in_value(changes):
    store = MemoryStore()
    try:
        every, _ = RECORD.change(store, changes, lambda every: None)
    except ValueError:
        return
    explicit = RECORD.explicit(store)
    assert all(RECORD.defaults[key] != value for key, value in explicit.items())
    assert RECORD.effective(store) == every
