"""
A relayed call through the running server: a sipp caller "behind NAT"
(its Via, Contact and SDP name 10.0.0.5 while it sends from 127.0.0.1)
calls a sipp callee registered as bob.  Both see the relay's address and
ports in the SDP they receive; a Python RTP peer on each side sends a tone
through the relay (440 Hz from the caller, 1 kHz from the callee) and
hears the other's; packets from a third socket and malformed datagrams
are dropped and counted; after the BYE the relay is gone and its ports
are closed.  And from a NATed caller, an offer the relay cannot read gets
488 while one with nothing to relay (MSRP) reaches the callee unchanged.
"""

import os
import re
import socket
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from communigate.admin.client import CLIClient
from communigate.formats.cgdata import loads
from communigate.media import analysis, g711
from communigate.media.session import RTPSession
from communigate.media.tones import Tone, ToneGenerator
from communigate.testing import free_port

from pbx_live_helpers import SCENARIOS, errors, register
from pbx_live_helpers import SIPP_LOGS as SIPP

FRAMES = 50


def cli(server, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        answers = [client.command(line) for line in lines]
    for line, (code, text) in zip(lines, answers):
        assert code in (200, 201), f"{line}: {code} {text}"
    return [loads(text) if code == 201 else None for code, text in answers]


def metrics(server) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def metric(text, name, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if wanted else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def port_range():
    """A hundred ports nothing uses now (the relay skips any it cannot bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        low = min(probe.getsockname()[1], 65400) & ~1
    return low, low + 99


def is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sipp_logged_ports(workdir, scenario):
    text = "".join(p.read_text() for p in workdir.glob(f"{scenario}_*_logs.log"))
    return [int(port) for port in re.findall(r"relay port (\d+) at c=IN IP4 127\.0\.0\.1", text)]


def wait_for(condition, timeout):
    """Poll C{condition} every 50 ms on the reactor until it gives a value."""
    deadline = time.monotonic() + timeout

    def poll():
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        return task.deferLater(reactor, 0.05, poll)

    return task.deferLater(reactor, 0, poll)


@pytest.fixture
def relayed(live_server, tmp_path):
    low, high = port_range()
    cli(
        live_server,
        "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
        "CREATEACCOUNT alice {Password = apw;}",
        "CREATEACCOUNT bob {Password = bpw;}",
        f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{low}-{high}"; IdleTimeout = 30;}}',
    )
    return live_server, (low, high)


@pytest_twisted.inlineCallbacks
def test_a_natted_callers_call_is_relayed_and_both_sides_hear_each_other(relayed, tmp_path):
    server, (low, high) = relayed
    heard = {"caller": [], "callee": []}
    caller = RTPSession(reactor, 0, on_packet=lambda packet, arrival: heard["caller"].append(packet))
    callee = RTPSession(reactor, 0, on_packet=lambda packet, arrival: heard["callee"].append(packet))
    caller_port = reactor.listenUDP(0, caller, interface="127.0.0.1")
    callee_port = reactor.listenUDP(0, callee, interface="127.0.0.1")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    processes = []
    try:
        # bob registers a contact that is his sipp UAS; his SDP names his RTP peer.
        uas_sip = free_port()
        register(server, tmp_path, "bob", "bpw", f"127.0.0.1:{uas_sip}", options=SIPP)
        processes.append(subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uas_media.xml"), "-m", "1", "-p", str(uas_sip), *SIPP,
             "-key", "rtp_port", str(callee_port.getHost().port), "-timeout", "30s", "-timeout_error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        ))
        yield task.deferLater(reactor, 0.3, lambda: None)
        (tmp_path / "call.csv").write_text(
            "SEQUENTIAL\nalice;example.com;bob;[authentication username=alice password=apw]\n"
        )
        processes.append(subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uac_nat_media.xml"), "-inf", "call.csv", "-m", "1",
             "-p", "0", *SIPP, "-timeout", "30s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        ))

        def established():
            (listed,) = cli(server, "LISTMEDIARELAYS")
            return listed[0] if listed and listed[0]["State"] == "established" else None

        relay = yield wait_for(established, 20)
        assert relay["Reason"] == "nat"
        assert relay["Caller"]["NAT"] == "YES" and relay["Callee"]["NAT"] == "NO"
        assert relay["Caller"]["Expected"] == ["10.0.0.5:4000"]
        assert relay["Callee"]["Expected"] == [f"127.0.0.1:{callee_port.getHost().port}"]
        caller_leg = int(relay["Caller"]["Ports"][0].split("/")[0])
        callee_leg = int(relay["Callee"]["Ports"][0].split("/")[0])
        assert low <= caller_leg < high and low <= callee_leg < high
        caller.remote = ("127.0.0.1", caller_leg)
        callee.remote = ("127.0.0.1", callee_leg)

        tones = {"caller": ToneGenerator(Tone((440,), -10.0)), "callee": ToneGenerator(Tone((1000,), -10.0))}
        sent = []

        def send_both():
            caller.send(g711.ulaw_encode(tones["caller"].frame()))
            callee.send(g711.ulaw_encode(tones["callee"].frame()))
            sent.append(1)
            if len(sent) == 5:  # both latched by now: strangers and junk
                for _ in range(3):
                    stranger.sendto(b"\x80\x00" + bytes(10) + b"stranger", ("127.0.0.1", caller_leg))
                    stranger.sendto(b"\x80\x00" + bytes(10) + b"stranger", ("127.0.0.1", callee_leg))
                stranger.sendto(b"not rtp at all", ("127.0.0.1", callee_leg))
            if len(sent) == FRAMES:
                loop.stop()

        loop = task.LoopingCall(send_both)
        loop.clock = reactor
        yield loop.start(0.02)
        yield task.deferLater(reactor, 0.3, lambda: None)

        during = metrics(server)
        assert metric(during, "communigate_media_relays") == 1
        assert metric(during, "communigate_media_relay_dropped_total", reason="wrong_source") == 6
        assert metric(during, "communigate_media_relay_dropped_total", reason="malformed") == 1
        assert metric(during, "communigate_media_relay_packets_total", direction="from_caller") >= FRAMES - 2
        assert metric(during, "communigate_media_relay_latches_total") >= 2

        def finished():
            return all(p.poll() is not None for p in processes)

        yield wait_for(finished, 30)
        assert [p.returncode for p in processes] == [0, 0], errors(tmp_path)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        stranger.close()
        yield caller_port.stopListening()
        yield callee_port.stopListening()

    # What each side heard.
    for name, frequency, other in (("callee", 440, 1000), ("caller", 1000, 440)):
        packets = sorted(heard[name], key=lambda p: p.sequence)
        assert len(packets) >= FRAMES - 5, (name, len(packets))
        audio = g711.ulaw_decode(b"".join(p.payload for p in packets))
        assert analysis.dominant_frequency(audio) == pytest.approx(frequency, abs=3)
        assert analysis.energy_fraction(audio, other) < 0.01
        assert not any(b"stranger" in p.payload for p in packets)
    # What each sipp saw in its SDP: the relay, on the port of its own leg.
    assert sipp_logged_ports(tmp_path, "uac_nat_media") == [caller_leg]
    assert sipp_logged_ports(tmp_path, "uas_media") == [callee_leg]

    # After the BYE: no relay, ports closed.
    (listed,) = cli(server, "LISTMEDIARELAYS")
    assert listed == []
    after = metrics(server)
    assert metric(after, "communigate_media_relays") == 0
    assert metric(after, "communigate_media_relay_ports") == 0
    assert metric(after, "communigate_media_relay_released_total", reason="bye") == 1
    assert all(is_free(p) for p in (caller_leg, caller_leg + 1, callee_leg, callee_leg + 1))


def raw_invite(call_id, body):
    return (
        "INVITE sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-{call_id};rport\r\n"
        f"From: <sip:carol@example.net>;tag={call_id}\r\nTo: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}@10.0.0.5\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@10.0.0.5:5070>\r\n"
        "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def received(sock, wanted, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            text = sock.recv(65536).decode()
        except socket.timeout:
            break
        if wanted(text):
            return text
    raise AssertionError("nothing wanted arrived")


def test_an_unreadable_offer_gets_488_and_one_without_audio_goes_through_unrelayed(relayed, tmp_path):
    server, _ = relayed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bob, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as carol:
        bob.bind(("127.0.0.1", 0))
        carol.bind(("127.0.0.1", 0))
        register(server, tmp_path, "bob", "bpw", f"127.0.0.1:{bob.getsockname()[1]}", options=SIPP)
        proxy = ("127.0.0.1", server.sip_port)

        # carol is behind NAT (Via 10.0.0.5, sent from 127.0.0.1): her call must be
        # relayed, and the relay cannot point a body it cannot read at itself.
        carol.sendto(raw_invite("bad-sdp", b"v=0\r\nthis is no session description\r\n"), proxy)
        final = received(carol, lambda text: text.startswith("SIP/2.0 4"))
        assert final.startswith("SIP/2.0 488 Bad SDP")

        # An MSRP session has nothing to relay: it reaches bob as it was sent.
        msrp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\n"
        carol.sendto(raw_invite("no-audio", msrp), proxy)
        forwarded = received(bob, lambda text: text.startswith("INVITE "))
        assert forwarded.endswith(msrp.decode())
    (listed,) = cli(server, "LISTMEDIARELAYS")
    assert listed == []
