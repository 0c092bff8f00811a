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

import os
import random
import re
import socket
import subprocess
import threading
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.media import g711
from communigate.media.analysis import energy_fraction
from communigate.media.rtp import RTPError, RTPPacket, parse_rtp
from communigate.media.tones import Tone, ToneGenerator
from communigate.testing import free_port, start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err", "-trace_logs"]

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


class Peer:
    """
    A phone's media side in a thread: sends a 20 ms PCMU frame of its tone
    every 20 ms to C{remote} (given, or the source of the first packet
    heard), and keeps each packet it hears with its source.
    """

    def __init__(self, frequency: float, latch: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self.frequency = frequency
        self.remote = None
        self.latch = latch
        self.heard: list[tuple[tuple[str, int], bytes]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def send_to(self, remote) -> None:
        with self._lock:
            self.remote = remote

    def packets(self):
        with self._lock:
            return list(self.heard)

    def _run(self) -> None:
        tone = ToneGenerator(Tone((self.frequency,), -10.0))
        sequence, timestamp, ssrc = 1, 1000, random.getrandbits(32)
        next_send = time.monotonic()
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except socket.timeout:
                data = None
            except OSError:
                return
            if data is not None:
                try:
                    packet = parse_rtp(data)
                except RTPError:
                    packet = None
                with self._lock:
                    if packet is not None and packet.payload_type == 0:
                        self.heard.append((tuple(source[:2]), g711.decode("PCMU", packet.payload)))
                    if self.remote is None and self.latch:
                        self.remote = tuple(source[:2])
            with self._lock:
                remote = self.remote
            now = time.monotonic()
            if remote is None or now < next_send:
                if remote is None:
                    next_send = now
                continue
            next_send += 0.02
            packet = RTPPacket(0, sequence, timestamp, ssrc, g711.encode("PCMU", tone.frame(160)))
            self.sock.sendto(packet.serialize(), remote)
            sequence = (sequence + 1) & 0xFFFF
            timestamp = (timestamp + 160) & 0xFFFFFFFF


def heard(packets, frequency: float, source=None) -> int:
    """How many 100 ms windows (from C{source} only, when given) hold C{frequency}."""
    pcm = b"".join(p for s, p in packets if source is None or s == source)
    windows = [pcm[i:i + 1600] for i in range(0, len(pcm) - 1599, 1600)]
    return sum(1 for window in windows if energy_fraction(window, frequency) > 0.6)


@pytest.fixture
def server(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins" / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "pbx_transparent_test_app.py").write_text(APP_PLUGIN)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "plugins"), os.environ.get("PYTHONPATH")]))
    )
    low = random.randrange(30000, 60000, 200)
    running = start_server(tmp_path / "data", "--pbx", f"rtp:{low}-{low + 199}:interface=127.0.0.1")
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{running.cli_port}") as client:
            client.login("postmaster", running.postmaster_password)
            table = "\\e".join([
                "S:<gw> = gatewayincoming{bob,bridge}#postmaster",
                "S:<back> = takesback{bob}#postmaster",
                "S:<join> = joiner{bob}#postmaster",
            ])
            for line in (
                f'SETROUTERTABLE "{table}"',
                "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
                "CREATEACCOUNT bob {Password = bpw;}",
            ):
                assert client.command(line)[0] == 200, line
        yield running, (low, low + 199)
    finally:
        stop_server(running)


def errors(workdir) -> str:
    return "".join(p.read_text() for p in workdir.glob("*_errors.log"))


def logged(workdir, scenario, what) -> list[int]:
    text = "".join(p.read_text() for p in workdir.glob(f"{scenario}_*_logs.log"))
    return [int(port) for port in re.findall(rf"\b{what} port (\d+)", text)]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None


def register_bob(server, workdir, port):
    (workdir / "register_contact.xml.csv").write_text(
        f"SEQUENTIAL\nbob;example.com;[authentication username=bob password=bpw];127.0.0.1:{port}\n")
    done = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "register_contact.xml"), "-inf", "register_contact.xml.csv",
         "-m", "1", "-p", "0", *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=30,
    )
    assert done.returncode == 0, done.stdout + errors(workdir)


def bob_phone(server, workdir, scenario, rtp_port):
    port = free_port()
    register_bob(server, workdir, port)
    process = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *SIPP,
         "-key", "rtp_port", str(rtp_port), "-timeout", "30s", "-timeout_error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )
    time.sleep(0.3)
    return process


def caller(server, workdir, callee, scenario, rtp_port):
    (workdir / f"{scenario}.csv").write_text(f"SEQUENTIAL\n{callee};example.com;{rtp_port}\n")
    return subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-inf", f"{scenario}.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "30s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )


def finished(process):
    try:
        output, _ = process.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def test_gatewayincoming_bridge_sends_the_media_peer_to_peer_and_each_side_hears_the_other(server, tmp_path):
    server, _ = server
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent.xml", caller_peer.port)
        offered = wait_for(lambda: logged(tmp_path, "uas_transparent", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    assert logged(tmp_path, "uac_transparent", "answered") == [bob_peer.port]
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
        offered = wait_for(lambda: logged(tmp_path, "uas_transparent_bye", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        to_caller = caller_peer.packets()
    (channel_port,) = logged(tmp_path, "uac_transparent_back", "channel")
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
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        for line in ("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}",
                     f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{low}-{low + 99}"; IdleTimeout = 30;}}'):
            assert client.command(line)[0] == 200, line
    with Peer(440) as caller_peer, Peer(1000) as bob_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent.xml", caller_peer.port)
        offered = wait_for(lambda: logged(tmp_path, "uas_transparent", "offered"))
        assert offered and low <= offered[0] <= low + 99, (offered, errors(tmp_path))
        bob_peer.send_to(("127.0.0.1", offered[0]))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    (answered,) = logged(tmp_path, "uac_transparent", "answered")
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
        reoffered = wait_for(lambda: logged(tmp_path, "uas_transparent_join", "reoffered"))
        assert reoffered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", caller_peer.port))
        answered = wait_for(lambda: logged(tmp_path, "uac_transparent_join", "answered"))
        assert answered == [bob_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", bob_peer.port))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_bob = caller_peer.packets(), bob_peer.packets()
    (channel,) = logged(tmp_path, "uas_transparent_join", "offered")
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
    assert logged(tmp_path, "uas_transparent_488", "refused") == [caller_peer.port]
    (second,) = logged(tmp_path, "uas_transparent_488", "second")
    (answered,) = logged(tmp_path, "uac_transparent", "answered")
    assert low <= second <= high and low <= answered <= high and second != answered
    assert heard(to_caller, 1000, ("127.0.0.1", answered)) >= 10, "bob's 1 kHz did not reach the caller"
    assert heard(to_bob, 440, ("127.0.0.1", second)) >= 10, "the caller's 440 Hz did not reach bob"


def test_bob_transferring_a_transparently_bridged_caller_to_carol_connects_the_caller_and_carol(server, tmp_path):
    """
    A caller (440 Hz) through C{gatewayincoming{bob,bridge}} to bob (1 kHz);
    bob's phone REFERs the call to carol (a sipp callee, 700 Hz): carol is
    offered the caller's own media port, the caller is re-INVITEd with
    carol's, each hears the other from the other's socket; bob gets the
    final NOTIFY (200) and a BYE.
    """
    server, (low, high) = server
    carol_port = free_port()
    with Peer(440, latch=False) as caller_peer, Peer(1000) as bob_peer, Peer(700, latch=False) as carol_peer:
        carol = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uas_transparent.xml"), "-m", "1", "-p", str(carol_port),
             *SIPP, "-key", "rtp_port", str(carol_peer.port), "-timeout", "30s", "-timeout_error"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )
        port = free_port()
        register_bob(server, tmp_path, port)
        bob = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uas_transparent_refers.xml"), "-m", "1", "-p", str(port),
             *SIPP, "-key", "rtp_port", str(bob_peer.port), "-key", "refer_to", f"sip:carol@127.0.0.1:{carol_port}",
             "-timeout", "30s", "-timeout_error"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )
        time.sleep(0.3)
        calling = caller(server, tmp_path, "gw", "uac_transparent_transferred.xml", caller_peer.port)
        offered = wait_for(lambda: logged(tmp_path, "uas_transparent_refers", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        answered = wait_for(lambda: logged(tmp_path, "uac_transparent_transferred", "answered"))
        assert answered == [bob_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", bob_peer.port))
        # bob transfers: carol is offered the caller's own media
        carol_offered = wait_for(lambda: logged(tmp_path, "uas_transparent", "offered"), 15)
        assert carol_offered == [caller_peer.port], errors(tmp_path)
        carol_peer.send_to(("127.0.0.1", caller_peer.port))
        reoffered = wait_for(lambda: logged(tmp_path, "uac_transparent_transferred", "reoffered"), 10)
        assert reoffered == [carol_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", carol_peer.port))
        code, output = finished(calling)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(bob)
        assert code == 0, output + errors(tmp_path)
        code, output = finished(carol)
        assert code == 0, output + errors(tmp_path)
        to_caller, to_carol, to_bob = caller_peer.packets(), carol_peer.packets(), bob_peer.packets()
    carol_address, caller_address = ("127.0.0.1", carol_peer.port), ("127.0.0.1", caller_peer.port)
    bob_address = ("127.0.0.1", bob_peer.port)
    assert heard(to_bob, 440, caller_address) >= 5, "bob did not hear the caller before the transfer"
    assert heard(to_caller, 1000, bob_address) >= 5, "the caller did not hear bob before the transfer"
    assert heard(to_caller, 700, carol_address) >= 10, "the caller did not hear carol's 700 Hz"
    assert heard(to_carol, 440, caller_address) >= 10, "carol did not hear the caller's 440 Hz"
    # peer to peer all along: nothing came from a PBX channel's port
    assert not {port for (_, port), _ in to_caller + to_carol} & set(range(low, high + 1))
    assert "final notify" in "".join(p.read_text() for p in tmp_path.glob("uas_transparent_refers_*_logs.log"))
    assert "transferred to" in server.output()


def _live_helpers():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "pbx_live_helpers.py")
    spec = importlib.util.spec_from_file_location("pbx_live_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_carol_replacing_bobs_transparently_bridged_call_talks_to_the_caller_peer_to_peer(server, tmp_path):
    """
    Attended transfer: a caller (440 Hz) through C{gatewayincoming{bob,bridge}}
    to bob (1 kHz); carol (700 Hz) sends an INVITE with Replaces naming the
    B2BUA's dialog with bob: the caller is re-INVITEd with carol's SDP,
    carol's 200 carries the caller's, bob gets a BYE, and the caller and
    carol hear each other straight from each other's socket.
    """
    helpers = _live_helpers()
    server, (low, high) = server
    with Peer(440, latch=False) as caller_peer, Peer(1000) as bob_peer, Peer(700, latch=False) as carol_peer:
        bob = bob_phone(server, tmp_path, "uas_transparent.xml", bob_peer.port)
        calling = caller(server, tmp_path, "gw", "uac_transparent_transferred.xml", caller_peer.port)
        offered = wait_for(lambda: logged(tmp_path, "uas_transparent", "offered"))
        assert offered == [caller_peer.port], errors(tmp_path)
        bob_peer.send_to(("127.0.0.1", offered[0]))
        answered = wait_for(lambda: logged(tmp_path, "uac_transparent_transferred", "answered"))
        assert answered == [bob_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", bob_peer.port))

        def leg_dialog():
            status = helpers.task_status(server, "gatewayleg")
            dialog = None if status is None else status.get("Call")
            return dialog if dialog and dialog.get("State") == "connected" else None

        dialog = wait_for(leg_dialog)
        assert dialog, "the B2BUA's leg never connected"
        time.sleep(1)  # the caller and bob talk
        replaces = (f"{dialog['Call-ID']};to-tag={helpers.tag_of(dialog['Local'])};"
                    f"from-tag={helpers.tag_of(dialog['Remote'])}")
        party = dialog["Remote"].split("<", 1)[1].split(">", 1)[0]
        (tmp_path / "carol.csv").write_text(f"SEQUENTIAL\n127.0.0.1:{server.sip_port};{carol_peer.port}\n")
        carol = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uac_replaces_bridged.xml"), "-inf", "carol.csv", "-m", "1",
             "-p", "0", *SIPP, "-key", "replaces", replaces, "-key", "replaced_party", party,
             "-timeout", "30s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        )
        reoffered = wait_for(lambda: logged(tmp_path, "uac_transparent_transferred", "reoffered"), 10)
        assert reoffered == [carol_peer.port], errors(tmp_path)
        caller_peer.send_to(("127.0.0.1", carol_peer.port))
        carol_answered = wait_for(lambda: logged(tmp_path, "uac_replaces_bridged", "answered"), 10)
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
    assert not {port for (_, port), _ in to_caller + to_carol} & set(range(low, high + 1))
    assert "bridged call" in server.output() and "replaced by" in server.output()
