"""
RFC 3903 entity tags: a new tag on every refresh, the old one dead,
expiry on the clock withdraws the source, and the server-wide bound.
"""

import pytest
from twisted.internet.task import Clock

from communigate.presence.roster import Roster
from communigate.presence.service import PresenceService, TooManySources
from communigate.presence.state import PresenceState
from communigate.sip.publication import Publications, TooManyPublications
from communigate.storage import MemoryStore

BUSY = PresenceState(show="dnd")


@pytest.fixture
def setup():
    clock = Clock()
    presence = PresenceService(Roster(MemoryStore()), clock, max_sources=2)
    return clock, presence, Publications(clock, presence, max_publications=3)


def test_every_refresh_gets_a_new_tag_and_the_old_one_is_dead(setup):
    clock, presence, publications = setup
    publication = publications.add("alice@example.com", BUSY, 60)
    first = publication.etag
    assert publications.find("alice@example.com", first) is publication
    second = publications.refresh(publication, 60)
    assert second != first and publications.find("alice@example.com", first) is None
    assert publications.find("alice@example.com", second) is publication
    assert presence.sources("alice@example.com") == {("sip-publish", first): BUSY}


def test_an_unrefreshed_publication_expires_and_withdraws_its_source(setup):
    clock, presence, publications = setup
    publication = publications.add("alice@example.com", BUSY, 60)
    clock.advance(50)
    publications.refresh(publication, 60, PresenceState(show="away"))
    clock.advance(59)
    assert presence.state("alice@example.com").show == "away"
    clock.advance(2)
    assert presence.status("alice@example.com") is None and len(publications) == 0
    assert clock.getDelayedCalls() == []


def test_publications_are_bounded_per_account_and_in_all(setup):
    clock, presence, publications = setup
    publications.add("alice@example.com", BUSY, 60)
    publications.add("alice@example.com", BUSY, 60)
    with pytest.raises(TooManySources):
        publications.add("alice@example.com", BUSY, 60)
    assert len(publications) == 2
    publications.add("bob@example.com", BUSY, 60)
    with pytest.raises(TooManyPublications):
        publications.add("carol@example.com", BUSY, 60)
    publications.stop()
    assert len(publications) == 0 and presence.counts()["accounts"] == 0
