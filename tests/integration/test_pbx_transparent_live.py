"""
Transparent bridging in a real C{twistd communigate}: a sipp caller calls
C{gatewayincoming{bob,bridge}}, which bridges it transparently to the sipp
phone registered as bob.  Each side's media is a Python RTP peer: the
caller's sends 440 Hz, bob's 1 kHz.

  - bob is offered the caller's own media port, the caller gets bob's in
    its 200; each peer hears the other's tone, and every packet it hears
    comes from the other peer's socket, none from a server port;
  - with C{MediaRelay = YES} on bob's account the SIP side relays that
    call: each peer is offered a relay port and hears the other's tone
    from the relay's ports, never a PBX channel's;
  - bob refusing the caller's offer (488) gets the B2BUA's own offer in
    the same dialog attempt, and the bridge is simple: each peer hears the
    other from a PBX channel's port;
  - a task that answers the caller, has another task call bob, and joins
    the two connected calls: the caller gets a re-INVITE without SDP, its
    offer goes to bob, bob's answer comes in the caller's ACK, and then
    each peer hears the other straight from the other's socket;
  - a task that bridges transparently and, when bob hangs up, takes the
    caller's media back (re-INVITE naming its channel) and plays 700 Hz:
    the caller hears bob's 1 kHz from bob's peer, then 700 Hz from the
    task's channel port;
  - transfers of the bridged call (carol's peer sends 700 Hz): bob's
    phone REFERs it to carol, or carol sends an INVITE with Replaces
    naming the B2BUA's dialog with bob; either way the caller is
    re-INVITEd with carol's SDP, carol gets the caller's, bob is hung up
    on, and the caller and carol hear each other peer to peer.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from communigate.media.analysis import energy_fraction
from communigate.testing import free_port

import pbx_live_helpers as live
from pbx_live_helpers import (
    SIPP_LOGS,
    configure,
    connected_call,
    errors,
    install_plugin,
    logged_ports,
    pbx_server,
    register,
    remote_party,
    replaces_header,
    router_table,
    start_sipp_client,
    start_sipp_server,
)
from pbx_live_helpers import SourceRecordingPeer as Peer

APP_PLUGIN = '''
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event


@implementer(IPlugin, ICallApplication)
class TakesMediaBack:
    name = "takesback"
    description = "bridges transparently to its parameter; when that side leaves, plays 700 Hz and hangs up"

    async def run(self, task):
        helper = task.start_task("bridgedcall", task.parameters[:1])
        try:
            await task.start_bridge(helper, "transparent")
        except CallError:
            return
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_disconnect:
                return
            if isinstance(item, Event) and item.is_break_bridge:
                break
        await task.play_tone(700, 2000)
        await task.disconnect()


@implementer(IPlugin, ICallApplication)
class Joiner:
    name = "joiner"
    description = "answers, has a second task call its parameter, then bridges the two calls transparently"

    async def run(self, task):
        await task.accept_call()
        helper = task.start_task("callsout", (task.id, task.parameters[0]))
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_disconnect:
                return
            if isinstance(item, Event) and item.what == "Ready":
                break
        await task.start_bridge(helper, "transparent")
        task.set_status("joined")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                if task.call is not None:
                    await task.disconnect()
                return


@implementer(IPlugin, ICallApplication)
class CallsOut:
    name = "callsout"
    description = "calls its second parameter, tells the first it is connected, accepts its bridge"

    async def run(self, task):
        joiner, destination = task.parameters
        await task.start_call(destination)
        while True:
            item = await task.read_input(None)
            if not isinstance(item, Event):
                continue
            if item.is_call_completed:
                if item.parameter is not None:
                    return
                task.send_event(joiner, "Ready")
            elif item.is_start_bridge:
                await task.accept_bridge(item)
            elif item.is_disconnect or item.is_break_bridge:
                if task.call is not None:
                    await task.disconnect()
                return


takesback = TakesMediaBack()
joiner = Joiner()
callsout = CallsOut()
'''


def heard(packets, frequency: float, source=None) -> int:
    """How many 100 ms windows (from C{source} only, when given) hold C{frequency}."""
    pcm = b"".join(p for s, p in packets if source is None or s == source)
    windows = [pcm[i:i + 1600] for i in range(0, len(pcm) - 1599, 1600)]
    return sum(1 for window in windows if energy_fraction(window, frequency) > 0.6)


@pytest.fixture
def server(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "pbx_transparent_test_app.py", APP_PLUGIN)
    with pbx_server(tmp_path) as (running, ports):
        configure(
            running,
            router_table(
                "S:<gw> = gatewayincoming{bob,bridge}#postmaster",
                "S:<back> = takesback{bob}#postmaster",
                "S:<join> = joiner{bob}#postmaster",
            ),
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT bob {Password = bpw;}",
        )
        yield running, ports


# This module's sipp runs log the SDP ports they see (SIPP_LOGS), wait 30 s
# for a message and 40 s to end; it polls every 20 ms.

def wait_for(predicate, timeout=10.0):
    return live.wait_for(predicate, timeout, interval=0.02)


def bob_phone(server, workdir, scenario, rtp_port):
    return live.answering_phone(server, workdir, "bob", "bpw", scenario, rtp_port, timeout="30s", options=SIPP_LOGS)


def caller(server, workdir, callee, scenario, rtp_port):
    return live.call(server, workdir, callee, rtp_port, scenario, timeout="30s", options=SIPP_LOGS)


def finished(process):
    return live.finished(process, timeout=40)


def test_gatewayincoming_bridge_sends_the_media_peer_to_peer_and_each_side_hears_the_other(server, tmp_path):
    server, _ = server
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent.xml", caller_peer.port)
        offered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    assert logged_ports(tmp_path, "uac_transparent", "answered") == [bob_peer.port]
    bob_address, caller_address = ("127.0.0.1", bob_peer.port), ("127.0.0.1", caller_peer.port)
    # peer to peer: every packet came from the other peer's own socket
    assert to_caller and {source for source, _ in to_caller} == {bob_address}
    assert to_bob and {source for source, _ in to_bob} == {caller_address}
    assert heard(to_caller, 1000) >= 10, "the caller did not hear bob's 1 kHz"
    assert heard(to_bob, 440) >= 10, "bob did not hear the caller's 440 Hz"


def test_when_the_callee_hangs_up_the_callers_task_takes_the_media_back_and_is_heard(server, tmp_path):
    server, (low, high) = server
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent_bye.xml", bob_peer.port)
        calling = caller(server, tmp_path, "back", "uac_transparent_back.xml", caller_peer.port)
        offered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent_bye", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        to_caller = caller_peer.packets()
    (channel_port,) = logged_ports(tmp_path, "uac_transparent_back", "channel")
    assert low <= channel_port <= high
    bob_address, channel_address = ("127.0.0.1", bob_peer.port), ("127.0.0.1", channel_port)
    assert {source for source, _ in to_caller} == {bob_address, channel_address}
    assert heard(to_caller, 1000, bob_address) >= 5, "bob's 1 kHz was not heard from bob's peer"
    assert heard(to_caller, 700, channel_address) >= 5, "the task's 700 Hz was not heard from its channel"
    # and in that order: bob first, then the task (bob's test peer goes on
    # sending after bob hung up; nothing stops it)
    sources = [source for source, _ in to_caller]
    assert sources.index(channel_address) > sources.index(bob_address)


def test_with_media_relay_requested_the_transparent_bridge_goes_through_the_relay(server, tmp_path):
    server, (pbx_low, pbx_high) = server
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        low = min(probe.getsockname()[1], 65400) & ~1
    configure(server, "UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}",
              f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{low}-{low + 99}"; IdleTimeout = 30;}}')
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent.xml", caller_peer.port)
        offered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent", "offered"))
        assert offered and low <= offered[0] <= low + 99, (offered, errors(tmp_path))
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    (answered,) = logged_ports(tmp_path, "uac_transparent", "answered")
    assert low <= answered <= low + 99
    relay_ports = set(range(low, low + 100))
    assert to_caller and {port for (_, port), _ in to_caller} <= relay_ports
    assert to_bob and {port for (_, port), _ in to_bob} <= relay_ports
    assert heard(to_caller, 1000) >= 10, "the caller did not hear bob's 1 kHz through the relay"
    assert heard(to_bob, 440) >= 10, "bob did not hear the caller's 440 Hz through the relay"


def test_two_connected_calls_joined_transparently_by_re_invite_hear_each_other_peer_to_peer(server, tmp_path):
    server, (low, high) = server
    with Peer(440, latch=False) as caller_peer, Peer(1000, latch=False) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent_join.xml", bob_peer.port)
        calling = caller(server, tmp_path, "join", "uac_transparent_join.xml", caller_peer.port)
        reoffered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent_join", "reoffered"))
        assert reoffered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", caller_peer.port))
        answered = wait_for(lambda: logged_ports(tmp_path, "uac_transparent_join", "answered"))
        assert answered == [bob_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", bob_peer.port))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    (channel,) = logged_ports(tmp_path, "uas_transparent_join", "offered")
    assert low <= channel <= high  # bob first talked to the task's channel
    bob_address, caller_address = ("127.0.0.1", bob_peer.port), ("127.0.0.1", caller_peer.port)
    assert heard(to_caller, 1000, bob_address) >= 10, "the caller did not hear bob's 1 kHz from bob's peer"
    assert heard(to_bob, 440, caller_address) >= 10, "bob did not hear the caller's 440 Hz from the caller's peer"
    # once the peers talk, the channels are gone: nothing from a server port after that
    first = next(i for i, (source, _) in enumerate(to_caller) if source == bob_address)
    assert {source for source, _ in to_caller[first:]} == {bob_address}
    first = next(i for i, (source, _) in enumerate(to_bob) if source == caller_address)
    assert {source for source, _ in to_bob[first:]} == {caller_address}


def test_a_callee_refusing_the_callers_offer_is_bridged_through_the_server_instead(server, tmp_path):
    server, (low, high) = server
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent_488.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent.xml", caller_peer.port)
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    assert logged_ports(tmp_path, "uas_transparent_488", "refused") == [caller_peer.port]
    (second,) = logged_ports(tmp_path, "uas_transparent_488", "second")
    (answered,) = logged_ports(tmp_path, "uac_transparent", "answered")
    assert low <= second <= high and low <= answered <= high and second != answered
    assert heard(to_caller, 1000, ("127.0.0.1", answered)) >= 10, "bob's 1 kHz did not reach the caller"
    assert heard(to_bob, 440, ("127.0.0.1", second)) >= 10, "the caller's 440 Hz did not reach bob"


def transfer_to_carol(server, tmp_path):
    """
    A caller (440 Hz) through C{gatewayincoming{bob,bridge}} to bob (1 kHz),
    whose phone REFERs the call to carol (a sipp callee, 700 Hz): the
    ports each was offered, what each peer heard, and the sipp runs'
    outcomes checked.
    """
    carol_port = free_port()
    with Peer(440, latch=False) as caller_peer, Peer(1000) as bob_peer, Peer(700, latch=False) as carol_peer:
        carol = start_sipp_server(tmp_path, "uas_transparent.xml", carol_port, timeout="30s", options=SIPP_LOGS,
                                  rtp_port=carol_peer.port)
        port = free_port()
        register(server, tmp_path, "bob", "bpw", f"127.0.0.1:{port}", options=SIPP_LOGS)
        bob = start_sipp_server(tmp_path, "uas_transparent_refers.xml", port, timeout="30s", options=SIPP_LOGS,
                                rtp_port=bob_peer.port, refer_to=f"sip:carol@127.0.0.1:{carol_port}")
        time.sleep(0.3)
        calling = caller(server, tmp_path, "gw", "uac_transparent_transferred.xml", caller_peer.port)
        (offered,) = wait_for(lambda: logged_ports(tmp_path, "uas_transparent_refers", "offered")) or [None]
        assert offered, errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered))
        (answered,) = wait_for(lambda: logged_ports(tmp_path, "uac_transparent_transferred", "answered")) or [None]
        assert answered, errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", answered))
        # bob transfers: carol is offered the caller's own media
        carol_offered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent", "offered"), 15)
        assert carol_offered == [caller_peer.port], errors(tmp_path)
        carol_peer.send_to(("127.0.0.1", caller_peer.port))
        reoffered = wait_for(lambda: logged_ports(tmp_path, "uac_transparent_transferred", "reoffered"), 10)
        assert reoffered == [carol_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", carol_peer.port))
        for process in (calling, bob, carol):
            code, output = finished(process)
            assert code == 0, output + errors(tmp_path)
        heard_by = {"caller": caller_peer.packets(), "carol": carol_peer.packets(), "bob": bob_peer.packets()}
    addresses = {name: ("127.0.0.1", peer.port) for name, peer in
                 (("caller", caller_peer), ("bob", bob_peer), ("carol", carol_peer))}
    assert heard(heard_by["caller"], 700, addresses["carol"]) >= 10, "the caller did not hear carol's 700 Hz"
    assert heard(heard_by["carol"], 440, addresses["caller"]) >= 10, "carol did not hear the caller's 440 Hz"
    assert {source for source, _ in heard_by["carol"]} == {addresses["caller"]}
    assert "final notify" in "".join(p.read_text() for p in tmp_path.glob("uas_transparent_refers_*_logs.log"))
    assert "transferred to" in server.output()
    return offered, answered, heard_by, addresses


def test_bob_transferring_a_transparently_bridged_caller_to_carol_connects_the_caller_and_carol(server, tmp_path):
    """
    A caller (440 Hz) through C{gatewayincoming{bob,bridge}} to bob (1 kHz);
    bob's phone REFERs the call to carol (a sipp callee, 700 Hz): carol is
    offered the caller's own media port, the caller is re-INVITEd with
    carol's, each hears the other from the other's socket; bob gets the
    final NOTIFY (200) and a BYE.
    """
    server, _ = server
    offered, answered, heard_by, addresses = transfer_to_carol(server, tmp_path)
    assert (offered, answered) == (addresses["caller"][1], addresses["bob"][1])
    assert heard(heard_by["bob"], 440, addresses["caller"]) >= 5, "bob did not hear the caller before the transfer"
    assert heard(heard_by["caller"], 1000, addresses["bob"]) >= 5, "the caller did not hear bob before the transfer"
    # peer to peer all along: every packet came from a peer's own socket, none from a PBX channel
    assert {source for source, _ in heard_by["caller"]} <= {addresses["bob"], addresses["carol"]}


def test_bob_transferring_a_relayed_transparent_bridge_to_carol_leaves_the_relay(server, tmp_path):
    """
    The same transfer with bob's calls relayed (C{MediaRelay = YES}): bob
    and the caller first talk through the media relay; carol, who needs no
    relay, is offered the caller's own media and the caller carol's, peer
    to peer; bob's relay session is released with his BYE.
    """
    server, (pbx_low, _) = server
    low = pbx_low + 200 if pbx_low + 400 < 32768 else pbx_low - 200
    relay_ports = range(low, low + 100)
    configure(server, "UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}",
              f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{low}-{low + 99}"; IdleTimeout = 30;}}')
    offered, answered, heard_by, addresses = transfer_to_carol(server, tmp_path)
    assert offered in relay_ports and answered in relay_ports
    assert heard(heard_by["bob"], 440) >= 5, "bob did not hear the caller through the relay"
    assert heard(heard_by["caller"], 1000) >= 5, "the caller did not hear bob through the relay"
    before = {source for source, _ in heard_by["caller"]} - {addresses["carol"]}
    assert before and {port for _, port in before} <= set(relay_ports)
    assert wait_for(lambda: live.cli(server, "LISTMEDIARELAYS")[1].strip() in ("", "()")), \
        live.cli(server, "LISTMEDIARELAYS")


def test_carol_replacing_bobs_transparently_bridged_call_talks_to_the_caller_peer_to_peer(server, tmp_path):
    """
    Attended transfer: a caller (440 Hz) through C{gatewayincoming{bob,bridge}}
    to bob (1 kHz); carol (700 Hz) sends an INVITE with Replaces naming the
    B2BUA's dialog with bob: the caller is re-INVITEd with carol's SDP,
    carol's 200 carries the caller's, bob gets a BYE, and the caller and
    carol hear each other straight from each other's socket.
    """
    server, _ = server
    with Peer(440, latch=False) as caller_peer, Peer(1000) as bob_peer, Peer(700, latch=False) as carol_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent_transferred.xml", caller_peer.port)
        offered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        answered = wait_for(lambda: logged_ports(tmp_path, "uac_transparent_transferred", "answered"))
        assert answered == [bob_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", bob_peer.port))
        dialog = connected_call(server, "gatewayleg", interval=0.02)
        assert dialog, "the B2BUA's leg never connected"
        time.sleep(1)  # the caller and bob talk
        carol = start_sipp_client(server, tmp_path, "uac_replaces_bridged.xml",
                                  [f"127.0.0.1:{server.sip_port}", carol_peer.port], csv="carol.csv",
                                  timeout="30s", options=SIPP_LOGS,
                                  replaces=replaces_header(dialog), replaced_party=remote_party(dialog))
        reoffered = wait_for(lambda: logged_ports(tmp_path, "uac_transparent_transferred", "reoffered"), 10)
        assert reoffered == [carol_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", carol_peer.port))
        carol_answered = wait_for(lambda: logged_ports(tmp_path, "uac_replaces_bridged", "answered"), 10)
        assert carol_answered == [caller_peer.port], errors(tmp_path)
        carol_peer.send_to(("127.0.0.1", caller_peer.port))
        for process in (calling, bob, carol):
            code, output = finished(process)
            assert code == 0, output + errors(tmp_path)
        to_caller, to_carol, to_bob = caller_peer.packets(), carol_peer.packets(), bob_peer.packets()
    carol_address, caller_address = ("127.0.0.1", carol_peer.port), ("127.0.0.1", caller_peer.port)
    assert heard(to_bob, 440, caller_address) >= 5, "bob did not hear the caller before the transfer"
    assert heard(to_caller, 700, carol_address) >= 10, "the caller did not hear carol's 700 Hz"
    assert heard(to_carol, 440, caller_address) >= 10, "carol did not hear the caller's 440 Hz"
    # peer to peer: every packet came from a peer's own socket, none from a PBX channel
    assert {source for source, _ in to_caller} <= {("127.0.0.1", bob_peer.port), carol_address}
    assert {source for source, _ in to_carol} == {caller_address}
    assert "bridged call" in server.output() and "replaced by" in server.output()


def test_a_natted_caller_joined_with_bob_talks_to_him_through_a_relay_the_join_opens(server, tmp_path):
    """
    The caller's SDP names a private address (10.0.0.5) it does not signal
    from: behind NAT.  Joined with bob's connected call, neither could
    reach the other directly, so the join opens a media relay session:
    bob is re-INVITEd with a relay port, the caller's ACK names the
    relay's other port, the relay latches the caller where its packets
    come from, and each hears the other from the relay.
    """
    server, (pbx_low, _) = server
    low = pbx_low + 200 if pbx_low + 400 < 32768 else pbx_low - 200  # next to the channels' range
    relay_ports = range(low, low + 100)
    configure(server, f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{low}-{low + 99}"; IdleTimeout = 30;}}')
    joined_scenario = (Path(live.SCENARIOS) / "uac_transparent_join.xml").read_text()
    natted = tmp_path / "uac_natted_join.xml"
    natted.write_text(joined_scenario.replace("c=IN IP4 127.0.0.1", "c=IN IP4 10.0.0.5"))
    with Peer(440, latch=False) as caller_peer, Peer(1000, latch=False) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent_join.xml", bob_peer.port)
        calling = caller(server, tmp_path, "join", str(natted), caller_peer.port)
        reoffered = wait_for(lambda: logged_ports(tmp_path, "uas_transparent_join", "reoffered"))
        assert reoffered and reoffered[0] in relay_ports, (reoffered, errors(tmp_path))
        bob_peer.send_to(("127.0.0.1", reoffered[0]))
        answered = wait_for(lambda: logged_ports(tmp_path, "uac_natted_join", "answered"))
        assert answered and answered[0] in relay_ports and answered != reoffered, (answered, errors(tmp_path))
        caller_peer.send_to(("127.0.0.1", answered[0]))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    from_relay_to_caller, from_relay_to_bob = ("127.0.0.1", answered[0]), ("127.0.0.1", reoffered[0])
    assert heard(to_caller, 1000, from_relay_to_caller) >= 10, "the caller did not hear bob through the relay"
    assert heard(to_bob, 440, from_relay_to_bob) >= 10, "bob did not hear the caller through the relay"
    assert ("127.0.0.1", bob_peer.port) not in {source for source, _ in to_caller}
    assert "media relay join;" in server.output()
