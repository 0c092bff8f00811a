"""
PIDF with RPID: documents round-trip through the serializer and the parser
(hypothesis), states map to documents and back as documented, real
documents from phones parse, and unsafe or broken XML is refused.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.formats import pidf
from communigate.formats.safexml import UnsafeXML, XMLError, clean
from communigate.formats.safexml import parse as parse_xml
from communigate.presence.state import PresenceState

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda s: s == s.strip() and clean(s) == s)
raw_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: clean(s) == s
)
activities = st.lists(st.sampled_from(sorted(pidf.ACTIVITIES)), max_size=4).map(tuple)
notes = st.lists(texts, max_size=3).map(tuple)

tuples = st.builds(
    pidf.Tuple,
    id=raw_texts,
    basic=st.sampled_from([None, "open", "closed"]),
    contact=st.none() | texts,
    notes=notes,
    activities=activities,
)
persons = st.builds(pidf.Person, id=raw_texts, activities=activities, notes=notes)
documents = st.builds(
    pidf.PresenceDocument,
    entity=raw_texts,
    tuples=st.lists(tuples, max_size=4).map(tuple),
    notes=notes,
    persons=st.lists(persons, max_size=2).map(tuple),
)
states = st.builds(
    PresenceState,
    available=st.just(True),
    show=st.sampled_from([None, "chat", "away", "xa", "dnd"]),
    status=st.none() | texts,
    activity=st.none() | st.sampled_from(sorted(pidf.ACTIVITIES)),
) | st.builds(PresenceState, available=st.just(False), status=st.none() | texts)


@settings(max_examples=300)
@given(documents)
def test_every_document_survives_serialize_then_parse(document):
    assert pidf.parse(pidf.serialize(document)) == document


@settings(max_examples=300)
@given(states)
def test_a_state_sent_to_a_watcher_comes_back_as_what_the_watcher_sees(state):
    seen = pidf.state_of(pidf.parse(pidf.serialize(pidf.document_for("sip:alice@example.com", state))))
    assert seen.available == state.available
    assert seen.status == state.status
    assert seen.status_string == state.status_string
    # What a watcher sees is stable: sending it on changes nothing more.
    again = pidf.state_of(pidf.document_for("sip:alice@example.com", seen))
    assert again == seen


@pytest.mark.parametrize(
    "activity, show", [("busy", "dnd"), ("on-the-phone", "dnd"), ("meeting", "dnd"), ("away", "away"),
                       ("lunch", "away"), ("vacation", "xa"), ("working", None)],
)
def test_rpid_activities_map_to_show_values(activity, show):
    document = pidf.PresenceDocument(
        "pres:bob@example.com", (pidf.Tuple("t", "open"),), persons=(pidf.Person("p", (activity,), ("hi",)),)
    )
    assert pidf.state_of(document) == PresenceState(show=show, status="hi", activity=activity)


def test_a_closed_basic_is_unavailable_whatever_the_activity():
    document = pidf.PresenceDocument(
        "sip:bob@example.com", (pidf.Tuple("t", "closed", notes=("gone home",)),),
        persons=(pidf.Person("p", ("busy",)),),
    )
    assert pidf.state_of(document) == PresenceState(available=False, status="gone home")


def test_busy_and_away_states_are_published_as_rpid_activities():
    busy = pidf.document_for("sip:a@example.com", PresenceState(show="dnd", status="call"))
    assert busy.persons[0].activities == ("busy",) and busy.tuples[0].notes == ("call",)
    assert pidf.document_for("sip:a@example.com", PresenceState(show="xa")).persons[0].activities == ("away",)
    phone = PresenceState(show="dnd", activity="on-the-phone")
    assert pidf.document_for("sip:a@example.com", phone).persons[0].activities == ("on-the-phone",)
    offline = pidf.document_for("sip:a@example.com", PresenceState(available=False))
    assert offline.tuples[0].basic == "closed" and offline.persons[0].activities == ()


RFC_3863_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <impp:tuple id="bs35r9">
    <impp:status>
      <impp:basic>open</impp:basic>
      <myex:location>home</myex:location>
    </impp:status>
    <impp:contact priority="0.8">im:someone@mobilecarrier.net</impp:contact>
    <impp:note xml:lang="en">Don't Disturb Please!</impp:note>
    <impp:timestamp>2001-10-27T16:49:29Z</impp:timestamp>
  </impp:tuple>
  <impp:note xml:lang="en">I'll be in Tokyo next week</impp:note>
</impp:presence>
"""

PHONE_PUBLISH = b"""<?xml version='1.0' encoding='UTF-8'?>
<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model'
 xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' xmlns:c='urn:ietf:params:xml:ns:pidf:cipid'
 entity='sip:alice@example.com'>
 <tuple id='t8a1'><status><basic>open</basic></status></tuple>
 <dm:person id='p1'><rpid:activities><rpid:on-the-phone/></rpid:activities>
 <dm:note>On the phone</dm:note><c:homepage>http://x</c:homepage></dm:person>
</presence>"""


def test_the_rfc_3863_example_and_a_phones_publish_parse():
    document = pidf.parse(RFC_3863_EXAMPLE)
    assert document.entity == "pres:someone@example.com"
    assert document.tuples == (
        pidf.Tuple("bs35r9", "open", "im:someone@mobilecarrier.net", ("Don't Disturb Please!",)),
    )
    assert pidf.state_of(document) == PresenceState(status="Don't Disturb Please!")
    assert pidf.state_of(pidf.parse(PHONE_PUBLISH)) == PresenceState(
        show="dnd", status="On the phone", activity="on-the-phone")


@pytest.mark.parametrize(
    "body, message",
    [
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf'/>", "no entity"),
        (b"<presence entity='sip:a@b'/>", "not a PIDF document"),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='x'><tuple id='t'><status><basic>maybe</basic>"
         b"</status></tuple></presence>", "open or closed"),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='x'>", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='x'>&nbsp;</presence>", "malformed XML"),
        (b"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='x'>"
         + b"<tuple id='t'/>" * 33 + b"</presence>", "more than 32 tuples"),
    ],
)
def test_broken_documents_are_refused_with_the_fault_named(body, message):
    with pytest.raises(pidf.PIDFError, match=message):
        pidf.parse(body)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&lol2;"/>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><note>&x;</note></presence>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<!DOCTYPE p><p/>"])
def test_dtds_and_entities_are_refused_before_anything_expands(body):
    with pytest.raises(UnsafeXML):
        parse_xml(body)
    with pytest.raises(pidf.PIDFError, match="DTD or entity"):
        pidf.parse(body)


def test_xml_bounds_hold():
    with pytest.raises(XMLError, match="deeper"):
        parse_xml(b"<a>" * 40 + b"</a>" * 40)
    with pytest.raises(XMLError, match="more than 10 elements"):
        parse_xml(b"<a>" + b"<b/>" * 10 + b"</a>", max_elements=10)
    with pytest.raises(XMLError, match="over 100 bytes"):
        parse_xml(b"<a>" + b" " * 100 + b"</a>", max_size=100)
    with pytest.raises(TypeError):
        parse_xml("<a/>")


def test_characters_xml_cannot_carry_are_dropped_on_the_way_out():
    document = pidf.document_for("sip:a@example.com", PresenceState(status="bell\x07 here"))
    assert pidf.parse(pidf.serialize(document)).tuples[0].notes == ("bell here",)
