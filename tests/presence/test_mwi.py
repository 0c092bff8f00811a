"""
Message-waiting counts: stored per account, checked, and told to watchers
when they change.
"""

import pytest
from zope.interface.verify import verifyObject

from communigate.interfaces import IMessageWaiting
from communigate.presence.mwi import MessageCounts, MessageWaiting
from communigate.storage import MemoryStore


def test_counts_are_stored_and_read_back_by_another_instance():
    store = MemoryStore()
    waiting = MessageWaiting(store)
    verifyObject(IMessageWaiting, waiting)
    assert waiting.counts("alice@example.com") == MessageCounts()
    waiting.set_counts("alice@example.com", MessageCounts(new=2, old=5, urgent_old=1))
    assert MessageWaiting(store).counts("alice@example.com") == MessageCounts(2, 5, 0, 1)
    waiting.set_counts("alice@example.com", MessageCounts())
    assert store.count("mwi") == 0


def test_watchers_hear_the_counts_at_once_and_on_each_change():
    waiting = MessageWaiting(MemoryStore())
    seen = []
    watch = waiting.watch("alice@example.com", seen.append)
    waiting.set_counts("alice@example.com", MessageCounts(new=1))
    waiting.set_counts("alice@example.com", MessageCounts(new=1))
    watch.cancel()
    waiting.set_counts("alice@example.com", MessageCounts(new=3))
    assert seen == [MessageCounts(), MessageCounts(new=1)]
    assert waiting.watcher_count() == 0


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError, match="new must be a whole number"):
        MessageCounts(new=-1)
    with pytest.raises(ValueError, match="urgent"):
        MessageCounts(new=1, urgent_new=2)
