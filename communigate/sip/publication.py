"""
The event state compositor side of RFC 3903 (SIP PUBLISH) for the
C{presence} package: entity tags and their expiry.

Each initial PUBLISH makes a publication: a source C{("sip-publish",
id)} of the account in the presence service, and an entity tag.  Every
successful refresh or modification gets a new tag (RFC 3903 6, step 8);
the old one is no longer valid (412).  A publication not refreshed in
time is withdrawn on the clock.  Bounds: the presence service's
per-account source limit, and C{max_publications} in all.
"""

from __future__ import annotations

import os

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

SOURCE_KIND = "sip-publish"
DEFAULT_MAX_PUBLICATIONS = 20_000


class TooManyPublications(ValueError):
    """The server holds as many publications as it allows."""


@attrs.define(eq=False)
class Publication:
    account: str
    source_id: str
    etag: str
    timer: object = None

    @property
    def source(self) -> tuple[str, str]:
        return (SOURCE_KIND, self.source_id)


def _new_tag() -> str:
    return os.urandom(9).hex()


class Publications:
    """
    The live publications, by account and entity tag.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, presence, *, max_publications: int = DEFAULT_MAX_PUBLICATIONS) -> None:
        self._clock = clock
        self._presence = presence
        self.max_publications = max_publications
        self._by_tag: dict[tuple[str, str], Publication] = {}

    def __len__(self) -> int:
        return len(self._by_tag)

    def find(self, account: str, etag: str) -> Publication | None:
        return self._by_tag.get((account, etag))

    def add(self, account: str, state, expires: int) -> Publication:
        """
        A new publication of C{state} for C{expires} seconds.

        @raise TooManyPublications: the server-wide bound.
        @raise communigate.presence.service.TooManySources: the account's.
        """
        if len(self._by_tag) >= self.max_publications:
            raise TooManyPublications("too many publications on this server")
        etag = _new_tag()
        publication = Publication(account, etag, etag)
        self._presence.publish(account, publication.source, state)
        self._by_tag[(account, etag)] = publication
        publication.timer = self._clock.callLater(expires, self._expired, publication)
        return publication

    def refresh(self, publication: Publication, expires: int, state=None) -> str:
        """
        Extend C{publication} (and replace its state when given); returns
        its new entity tag.
        """
        if state is not None:
            self._presence.publish(publication.account, publication.source, state)
        del self._by_tag[(publication.account, publication.etag)]
        publication.etag = _new_tag()
        self._by_tag[(publication.account, publication.etag)] = publication
        if publication.timer is not None and publication.timer.active():
            publication.timer.reset(expires)
        else:
            publication.timer = self._clock.callLater(expires, self._expired, publication)
        return publication.etag

    def remove(self, publication: Publication) -> None:
        self._by_tag.pop((publication.account, publication.etag), None)
        if publication.timer is not None and publication.timer.active():
            publication.timer.cancel()
        publication.timer = None
        self._presence.withdraw(publication.account, publication.source)

    def _expired(self, publication: Publication) -> None:
        publication.timer = None
        self.log.debug("Presence publication of {account} expired", account=publication.account)
        self.remove(publication)

    def stop(self) -> None:
        for publication in list(self._by_tag.values()):
            self.remove(publication)
