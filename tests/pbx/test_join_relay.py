"""
The media relay for two connected calls a transparent bridge joins
(communigate.pbx.join_relay), on a memory reactor: a NATed caller's join
with bob goes through a relay session of its own; peers that reach each
other get none; a call the SIP side relays already gets no second one;
later offers cross through the relay; a refusal, a break and a BYE
release it.
"""

from communigate.media.relay import LegAddress
from communigate.media.relay_policy import Party, session_key
from communigate.network import NetworkSettings
from communigate.pbx.join_relay import _host_of, join_media, peer_party

from .conftest import CALLER, offer
from .test_transparent import (  # noqa: F401  (made is a fixture)
    BOB,
    SDP,
    answer_request,
    bob_sdp,
    connect_both,
    joined,
    made,
    media_port_of,
    requests_at,
)

NATTED = b"c=IN IP4 10.0.0.5"


def natted_offer(port, **kwargs) -> bytes:
    """The caller's SDP naming its private address (it signals from 127.0.0.1)."""
    return offer(port=port, **kwargs).replace(b"c=IN IP4 127.0.0.1", NATTED)


def address_of(body: bytes) -> str:
    line = next(line for line in body.decode().split("\r\n") if line.startswith("c="))
    return line.split()[-1]


def start_join(harness, back_id, caller_offer):
    """Both calls connected, front's join under way: the caller's 2xx offer sent."""
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=caller_offer, source=CALLER, tag="ft1")
    return backing, answer


def front_of(harness):
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    return front


# -- pure parts -------------------------------------------------------------------------


def test_host_of_reads_ip_literals_of_sip_uris_only():
    assert _host_of("sip:bob@192.0.2.7:5070;transport=udp") == "192.0.2.7"
    assert _host_of("<sip:bob@[2001:db8::1]:5060>") == "2001:db8::1"
    assert _host_of("sip:192.0.2.8") == "192.0.2.8"
    assert _host_of("sip:bob@phone.example.com") is None
    assert _host_of(None) is None and _host_of("") is None


class _Leg:
    def __init__(self, incoming, invite=None, remote_target=None, call_id="c@x", local_tag="l", remote_tag="r"):
        self.incoming, self.invite, self.remote_target = incoming, invite, remote_target
        self.call_id, self.local_tag, self.remote_tag, self.remote = call_id, local_tag, remote_tag, "<sip:x@y>"


class _Invite:
    def __init__(self, address, account=None):
        self.submitter = type("S", (), {"address": address, "account": account})()


class _Call:
    joined_media = None

    def __init__(self, leg, peer_sdp):
        self.leg, self.peer_sdp = leg, peer_sdp


def test_a_peer_naming_a_private_address_it_does_not_signal_from_is_behind_nat():
    network = NetworkSettings()
    incoming = _Call(_Leg(True, _Invite(("198.51.100.4", 5060))), natted_offer(4000))
    assert peer_party(incoming, network) == Party("198.51.100.4", True, "10.0.0.5")
    direct = _Call(_Leg(True, _Invite(("198.51.100.4", 5060))), offer(4000).replace(b"127.0.0.1", b"198.51.100.4"))
    assert peer_party(direct, network) == Party("198.51.100.4", False, "198.51.100.4")
    # a peer we called is known by its Contact's host, else by its SDP
    public = offer(4000).replace(b"127.0.0.1", b"203.0.113.10")
    called = _Call(_Leg(False, remote_target="sip:bob@203.0.113.9:5060"), public)
    assert peer_party(called, network) == Party("203.0.113.9", False, "203.0.113.10")
    natted = _Call(_Leg(False, remote_target="sip:bob@203.0.113.9:5060"), natted_offer(4000))
    assert peer_party(natted, network) == Party("203.0.113.9", True, "10.0.0.5")
    named = _Call(_Leg(False, remote_target="sip:bob@phone.example.com"), offer(4000))
    assert peer_party(named, network) == Party("127.0.0.1", False, "127.0.0.1")
    assert peer_party(_Call(_Leg(False, remote_target="sip:x@host.example"), None), network) is None


# -- joins over SIP --------------------------------------------------------------------


def test_a_natted_callers_join_with_bob_goes_through_a_relay_session_of_its_own(made):  # noqa: F811
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, answer = start_join(harness, back_id, natted_offer(40200))
    (session,) = harness.core.media_relay.sessions()
    assert session.reason == "nat" and session.key.startswith("join;")
    # bob is offered the relay's port, not the caller's private address
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    assert NATTED not in to_bob.body and media_port_of(to_bob.body) != 40200
    answer_request(harness, to_bob, 200, body=bob_sdp(42200))
    # the caller's ACK carries the relay's other port, not bob's
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    relay_ports = {media_port_of(to_bob.body), media_port_of(ack.body)}
    assert 42200 not in relay_ports and len(relay_ports) == 2
    front_call, back_call = front_of(harness).call, backing.call
    assert front_call.transparent and front_call.joined_media is backing.call.joined_media is not None
    assert session.is_established
    # bob hangs up: the relay goes with the bridge
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=backing.call.leg.call_id, cseq=7,
                          from_tag="bobtag", to_tag=backing.call.leg.local_tag, source=BOB)
    harness.port.receive(bye, BOB)
    harness.turn()
    assert session.closed
    assert front_call.joined_media is None and back_call.joined_media is None


def test_peers_that_reach_each_other_are_joined_without_a_relay(made):  # noqa: F811
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    start_join(harness, back_id, offer(port=40200))
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(to_bob.body) == 40200
    assert harness.core.media_relay.sessions() == []


def test_a_join_with_a_call_the_sip_side_relays_already_opens_no_second_session(made):  # noqa: F811
    harness = made()
    relay = harness.core.media_relay
    leg = LegAddress("127.0.0.1", "127.0.0.1")
    relay.open(session_key("placed@pbx", "ourtag"), leg, leg, "requested")
    caller = _Call(_Leg(True, _Invite(("127.0.0.1", 5060)), call_id="in@x", remote_tag="theirs"),
                   natted_offer(4000))
    relayed = _Call(_Leg(False, remote_target="sip:bob@127.0.0.1:5090", call_id="placed@pbx", local_tag="ourtag"),
                    offer(4002))
    assert join_media(harness.pbx, caller, relayed) is None
    assert len(relay.sessions()) == 1
    # the same two peers, neither call relayed: the NATed caller needs one
    fresh = _Call(_Leg(False, remote_target="sip:bob@127.0.0.1:5090", call_id="other@pbx", local_tag="t"),
                  offer(4002))
    joined_media = join_media(harness.pbx, caller, fresh)
    assert joined_media is not None and joined_media.session.reason == "nat"
    assert caller.joined_media is fresh.joined_media is joined_media
    joined_media.release("test")
    assert caller.joined_media is None and joined_media.closed


def test_later_offers_of_either_peer_cross_through_the_join_relay(made):  # noqa: F811
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, answer = start_join(harness, back_id, natted_offer(40200))
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42200))
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    requests_at(harness, BOB)
    # the caller puts bob on hold: bob sees the relay's port again
    harness.in_dialog("INVITE", answer, cseq=3, body=natted_offer(40200, direction="sendonly"), content_type=SDP)
    (hold,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(hold.body) == media_port_of(to_bob.body) and b"a=sendonly" in hold.body
    assert NATTED not in hold.body
    answer_request(harness, hold, 200, body=bob_sdp(42200, direction="recvonly"))
    held = harness.final()
    assert held.status == 200 and media_port_of(held.body) == media_port_of(ack.body)
    assert address_of(held.body) != "10.0.0.5"


def test_a_join_bob_refuses_releases_the_relay_and_the_channel_answers_the_callers_own_offer(made):  # noqa: F811
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    start_join(harness, back_id, natted_offer(40300))
    (session,) = harness.core.media_relay.sessions()
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 488)
    assert session.closed
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    front = front_of(harness)
    assert media_port_of(ack.body) == front.call.channel.port
    # the channel sends to the caller's own (private) address, not to the relay
    assert front.call.channel.remote[0] == "10.0.0.5"
    assert harness.pbx.bridges == {"fallback": 1}


def test_break_bridge_releases_the_join_relay(made):  # noqa: F811
    log = []

    async def after(task):
        await task.read_input(1)
        await task.break_bridge()

    back_id, programs = joined(log, after=after)
    harness = made(**programs)
    backing, answer = start_join(harness, back_id, natted_offer(40500))
    (session,) = harness.core.media_relay.sessions()
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42500))
    requests_at(harness, BOB, "ACK")
    assert not session.closed
    harness.reactor.advance(1.01)
    harness.turn()
    assert session.closed
    front = front_of(harness)
    (to_caller,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(to_caller.body) == front.call.channel.port
