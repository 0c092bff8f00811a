"""
RFC 4235 dialog-info and RFC 3842 message-summary bodies: what we write
reads back, values are checked, unsafe XML is refused.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from communigate.formats import dialoginfo, message_summary
from communigate.formats.safexml import clean

words = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: clean(s) == s
)
identities = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s == s.strip() and clean(s) == s
)
dialogs = st.builds(
    dialoginfo.Dialog,
    id=words,
    state=st.sampled_from(dialoginfo.STATES),
    call_id=st.none() | words,
    local_tag=st.none() | words,
    remote_tag=st.none() | words,
    direction=st.none() | st.sampled_from(dialoginfo.DIRECTIONS),
    event=st.none() | st.sampled_from(dialoginfo.EVENTS),
    code=st.none() | st.integers(100, 699),
    local_identity=st.none() | identities,
    remote_identity=st.none() | identities,
)
infos = st.builds(
    dialoginfo.DialogInfo,
    entity=words,
    version=st.integers(0, 2**32),
    state=st.sampled_from(["full", "partial"]),
    dialogs=st.lists(dialogs, max_size=3).map(tuple),
)


@given(infos)
def test_dialog_info_round_trips(info):
    assert dialoginfo.parse(dialoginfo.serialize(info)) == info


def test_a_confirmed_call_reads_like_rfc_4235():
    body = dialoginfo.serialize(
        dialoginfo.DialogInfo(
            "sip:alice@example.com", 3, "full",
            (dialoginfo.Dialog("d1", "confirmed", "c@h", "a", "b", "initiator",
                               local_identity="sip:alice@example.com", remote_identity="sip:bob@example.com"),),
        )
    ).decode()
    assert 'version="3" state="full" entity="sip:alice@example.com"' in body
    assert '<dialog id="d1" call-id="c@h" local-tag="a" remote-tag="b" direction="initiator">' in body
    assert "<state>confirmed</state>" in body and "<remote><identity>sip:bob@example.com</identity></remote>" in body


def test_bad_dialog_info_is_refused():
    with pytest.raises(ValueError, match="state must be one of"):
        dialoginfo.Dialog("d", "ringing")
    with pytest.raises(dialoginfo.DialogInfoError, match="not a dialog-info"):
        dialoginfo.parse(b"<x/>")
    with pytest.raises(dialoginfo.DialogInfoError, match="DTD"):
        dialoginfo.parse(b"<!DOCTYPE x><x/>")
    with pytest.raises(dialoginfo.DialogInfoError, match="bad dialog-info value"):
        dialoginfo.parse(b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="x" state="full"/>')


def test_message_summary_bodies_read_back():
    body = message_summary.serialize("sip:alice@example.com", 2, 8, 0, 2)
    assert body == (b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@example.com\r\n"
                    b"Voice-Message: 2/8 (0/2)\r\n")
    summary = message_summary.parse(body)
    assert summary == message_summary.Summary(True, "sip:alice@example.com", (("voice-message", (2, 8, 0, 2)),))
    assert not message_summary.parse(message_summary.serialize(None, 0, 3)).waiting
    with pytest.raises(ValueError, match="no Messages-Waiting"):
        message_summary.parse(b"Voice-Message: 1/2\r\n")
    with pytest.raises(ValueError, match="bad message counts"):
        message_summary.parse(b"Messages-Waiting: yes\r\nVoice-Message: many\r\n")
