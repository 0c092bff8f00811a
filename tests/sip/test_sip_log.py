"""
The SIP log keeps recent messages within its bounds and finds them by
Call-ID, method, status and any address they name.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from communigate.sip.log import IN, OUT, SIPLog

INVITE = (
    b"INVITE sip:+15553837461@example.com SIP/2.0\r\n"
    b"Call-ID: abc@host\r\nCSeq: 1 INVITE\r\n\r\n"
)


def test_messages_are_found_by_call_id_method_status_and_address():
    log = SIPLog(Clock())
    log.record(IN, "udp", ("192.0.2.1", 5060), INVITE, call_id="abc@host", method="INVITE",
               addresses=["sip:+15553837461@example.com", "sip:alice@example.com"])
    log.record(OUT, "udp", ("192.0.2.1", 5060), b"SIP/2.0 180 Ringing\r\n\r\n",
               call_id="abc@host", method="INVITE", status=180)
    log.record(IN, "tcp", ("198.51.100.7", 5070), b"MESSAGE sip:bob@example.com SIP/2.0\r\n\r\n",
               call_id="other", method="message", addresses=["sip:bob@example.com"])
    assert [e.status for e in log.search(call_id="abc@host")] == [0, 180]
    assert [e.call_id for e in log.search(method="MESSAGE")] == ["other"]
    assert [e.first_line() for e in log.search(status=180)] == ["SIP/2.0 180 Ringing"]
    assert [e.call_id for e in log.search(address="5553837461")] == ["abc@host"]
    assert [e.call_id for e in log.search(address="198.51.100.7")] == ["other"]
    assert log.search(call_id="abc@host", method="MESSAGE") == []


def test_the_log_keeps_only_the_newest_within_count_and_bytes():
    log = SIPLog(Clock(), capacity=3, max_bytes=10_000)
    for i in range(5):
        log.record(IN, "udp", ("h", 1), INVITE, call_id=str(i))
    assert [e.call_id for e in log.search()] == ["2", "3", "4"]
    small = SIPLog(Clock(), capacity=100, max_bytes=len(INVITE) * 2)
    for i in range(5):
        small.record(IN, "udp", ("h", 1), INVITE, call_id=str(i))
    assert [e.call_id for e in small.search()] == ["3", "4"]


def test_a_search_returns_the_newest_matches_up_to_its_limit_oldest_first():
    clock = Clock()
    log = SIPLog(clock)
    for i in range(10):
        clock.advance(1)
        log.record(IN, "udp", ("h", 1), INVITE, call_id=str(i), method="INVITE")
    assert [e.call_id for e in log.search(method="invite", limit=3)] == ["7", "8", "9"]


def test_entries_render_as_data_for_the_cli():
    log = SIPLog(Clock())
    log.record(IN, "udp", ("192.0.2.1", 5060), INVITE, call_id="abc@host", method="INVITE")
    data = log.search()[0].as_data()
    assert data["Line"] == "INVITE sip:+15553837461@example.com SIP/2.0"
    assert data["Peer"] == "192.0.2.1:5060" and data["Status"] == "0"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=50), st.integers(1, 20), st.integers(1, 2000))
def test_bounds_hold_for_any_traffic(messages, capacity, max_bytes):
    log = SIPLog(Clock(), capacity=capacity, max_bytes=max_bytes)
    for data in messages:
        log.record(IN, "udp", ("h", 1), data)
    assert len(log) <= capacity
    assert sum(len(e.text) for e in log.search(limit=10**6)) <= max(max_bytes, 0) or len(log) == 0


def test_a_parsed_message_is_indexed_by_what_it_says():
    """
    Given the parsed message, the log takes Call-ID, method and status from
    it, and finds the message by the Request-URI, From, To and Contact it
    names, read from the text only when a search asks.
    """
    from communigate.sip.message import parse_message

    data = (
        b"REGISTER sip:example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n"
        b"Call-ID: reg-1@10.0.0.5\r\nCSeq: 7 REGISTER\r\n"
        b"Contact: <sip:alice@10.0.0.5:5062>\r\nContent-Length: 0\r\n\r\n"
    )
    response = b"SIP/2.0 401 Unauthorized\r\n" + data.split(b"\r\n", 1)[1]
    log = SIPLog(Clock())
    log.record(IN, "udp", ("203.0.113.9", 4000), data, parse_message(data))
    log.record(OUT, "udp", ("203.0.113.9", 4000), response, parse_message(response))
    assert [(e.method, e.status) for e in log.search(call_id="reg-1@10.0.0.5")] == [("REGISTER", 0), ("REGISTER", 401)]
    assert len(log.search(address="10.0.0.5:5062")) == 2
    assert len(log.search(address="sip:example.com")) == 1
    assert log.search(address="bob@") == []


def test_an_unparsable_message_is_still_found_by_its_peer():
    log = SIPLog(Clock())
    log.record(IN, "udp", ("203.0.113.9", 4000), b"\xff\xfe garbage")
    assert len(log.search(address="203.0.113.9")) == 1


def test_an_entry_keeps_the_octets_it_was_given_and_decodes_them_when_read():
    # The same object the transport sent, and a completed transaction keeps.
    log = SIPLog(Clock())
    data = b"MESSAGE sip:bob@example.com SIP/2.0\r\nSubject: caf\xc3\xa9 \xff\r\n\r\n"
    log.record(IN, "udp", ("192.0.2.1", 5060), data)
    (entry,) = log.search()
    assert entry.data is data
    assert entry.text == "MESSAGE sip:bob@example.com SIP/2.0\r\nSubject: café \ufffd\r\n\r\n"
