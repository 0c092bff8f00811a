"""
RFC 3858 watcherinfo bodies: any set of watchers is written as
well-formed XML that reads back to the same watchers; values are checked;
unsafe XML is refused.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from communigate.formats import watcherinfo
from communigate.formats.safexml import clean, parse as parse_xml

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s == s.strip() and clean(s) == s
)
seconds = st.none() | st.integers(0, 2**31)
watchers = st.builds(
    watcherinfo.Watcher,
    id=texts,
    uri=texts,
    status=st.sampled_from(watcherinfo.STATUSES),
    event=st.sampled_from(watcherinfo.EVENTS),
    display_name=st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20).filter(
        lambda s: clean(s) == s
    ),
    expiration=seconds,
    duration_subscribed=seconds,
)
lists = st.builds(
    watcherinfo.WatcherList,
    resource=texts,
    package=st.sampled_from(["presence", "dialog", "presence.winfo"]),
    watchers=st.lists(watchers, max_size=5).map(tuple),
)
documents = st.builds(
    watcherinfo.WatcherInfo,
    version=st.integers(0, 2**32),
    state=st.sampled_from(watcherinfo.STATES),
    lists=st.lists(lists, max_size=3).map(tuple),
)


@given(documents)
def test_any_watcherinfo_document_is_well_formed_and_reads_back(info):
    body = watcherinfo.serialize(info)
    root = parse_xml(body)
    assert root.tag == f"{{{watcherinfo.NS}}}watcherinfo"
    assert watcherinfo.parse(body) == info


def test_a_pending_and_an_active_watcher_read_like_rfc_3858():
    info = watcherinfo.WatcherInfo(
        version=0,
        state="full",
        lists=(
            watcherinfo.WatcherList(
                "sip:alice@example.com",
                "presence",
                (
                    watcherinfo.Watcher("w1", "sip:bob@example.com", "pending", "subscribe"),
                    watcherinfo.Watcher("w2", "xmpp:carol@example.com", "active", "approved", display_name="Carol"),
                ),
            ),
        ),
    )
    assert watcherinfo.serialize(info) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
        b'<watcher-list resource="sip:alice@example.com" package="presence">'
        b'<watcher id="w1" status="pending" event="subscribe">sip:bob@example.com</watcher>'
        b'<watcher id="w2" status="active" event="approved" display-name="Carol">xmpp:carol@example.com</watcher>'
        b"</watcher-list></watcherinfo>\n"
    )


def test_a_document_from_another_server_with_blanks_and_prefixes_parses():
    body = b"""<?xml version="1.0"?>
<wi:watcherinfo xmlns:wi="urn:ietf:params:xml:ns:watcherinfo" version="7" state="partial">
  <wi:watcher-list resource="sip:professor@example.net" package="presence">
    <wi:watcher status="active" id="8ajksjda7s" duration-subscribed="509" event="approved">
      sip:userA@example.net
    </wi:watcher>
  </wi:watcher-list>
</wi:watcherinfo>"""
    info = watcherinfo.parse(body)
    assert (info.version, info.state) == (7, "partial")
    (watcher,) = info.lists[0].watchers
    assert watcher == watcherinfo.Watcher("8ajksjda7s", "sip:userA@example.net", "active", "approved",
                                          duration_subscribed=509)


def test_bad_watcherinfo_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        watcherinfo.Watcher("w1", "sip:bob@example.com", "asleep", "subscribe")
    with pytest.raises(ValueError, match="uri must be a non-empty string"):
        watcherinfo.Watcher("w1", "", "active", "subscribe")
    with pytest.raises(watcherinfo.WatcherInfoError, match="not a watcherinfo"):
        watcherinfo.parse(b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>")
    with pytest.raises(watcherinfo.WatcherInfoError, match="DTD"):
        watcherinfo.parse(b'<!DOCTYPE w [<!ENTITY a "x">]><watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"/>')
    with pytest.raises(watcherinfo.WatcherInfoError, match="bad watcherinfo value"):
        watcherinfo.parse(b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="x" state="full"/>')
    with pytest.raises(watcherinfo.WatcherInfoError, match="bad watcherinfo value"):
        watcherinfo.parse(
            b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full">'
            b'<watcher-list resource="sip:a@b" package="presence"><watcher id="1" status="active" event="nope">'
            b"sip:c@d</watcher></watcher-list></watcherinfo>"
        )
