"""
What the live PBX tests share, in one place rather than a copy in each
test module: a real C{twistd communigate} with PBX RTP ports, sipp as a
caller, a registered phone or a bare callee, threaded Python RTP peers
that send a tone and keep what they hear, and checks of that audio.

Test modules import it by name (C{from pbx_live_helpers import ...}):
C{conftest.py} of this directory puts the directory on C{sys.path},
because pytest runs with C{--import-mode=importlib}, which puts none.

  - the server: L{pbx_server} (start, yield, stop), L{install_plugin}
    (a test's own ICallApplication plugins), L{configure} / L{cli} (CLI
    commands as postmaster), L{router_table};
  - sipp: L{call} (a UAC calling a PBX application with its RTP port),
    L{start_sipp_client} / L{run_sipp_client} (any UAC scenario with CSV
    fields and C{-key} values), L{register}, L{answering_phone} (a
    registered UAS), L{sipp_callee} / L{start_sipp_server} (a UAS on a
    port), L{finished}, L{errors}, L{logged_ports};
  - media: L{RTPPeer} (symmetric, sends a tone, RFC 4733 keys and keys
    as tones in the audio),
    L{SourceRecordingPeer} (keeps where each packet came from, sends where
    it is told), L{ThreadedPeer} (their common thread and waiting);
  - audio checks: L{windows}, L{heard_tone}, L{hears}, L{never_hears};
  - the PBX's state: L{task_status}, L{connected_call}, L{wait_for}, and
    from a task's C{Call} status L{replaces_header}, L{remote_party},
    L{tag_of}.

Each helper keeps the timeouts the tests had (sipp's C{-timeout}, how
long a run may take, how often a wait polls) as defaults or parameters:
moving a helper here changes no test's timing.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

from communigate.admin.client import CLIClient
from communigate.formats.cgdata import loads
from communigate.media import g711
from communigate.media.analysis import energy_fraction
from communigate.media.events import TelephoneEventSender
from communigate.media.rtp import RTPError, RTPPacket, parse_rtp
from communigate.media.tones import Tone, ToneGenerator, dtmf
from communigate.testing import free_port, start_server, stop_server

#: The directory of the sipp scenarios.
SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sipp")
#: sipp's options for every run: 127.0.0.1, no keyboard, no automatic
#: answer to a BYE the scenario does not expect, errors to C{*_errors.log}.
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]
#: L{SIPP} and C{-trace_logs}: what scenarios C{<log>} (the SDP ports
#: they saw) goes to C{<scenario>_<pid>_logs.log}, for L{logged_ports}.
SIPP_LOGS = [*SIPP, "-trace_logs"]


# -- the server ------------------------------------------------------------


def install_plugin(tmp_path, monkeypatch, filename: str, source: str) -> None:
    """
    Make C{source} (a module of test PBX applications) a C{communigate.plugins}
    module named C{filename} for servers started after this: it goes below
    C{tmp_path/plugins}, which joins C{PYTHONPATH} for the server process.
    """
    plugins = tmp_path / "plugins" / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / filename).write_text(source)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "plugins"), os.environ.get("PYTHONPATH")]))
    )


@contextmanager
def pbx_server(tmp_path):
    """
    A running server on C{tmp_path/data} whose PBX channels take RTP ports
    of a random 200-port range (so parallel runs seldom collide) below the
    kernel's ephemeral ports (32768 up), so a test peer's socket bound to
    port 0 never lands inside it; yields the server and the range's (lowest,
    highest) port; stops it afterwards.
    """
    low = random.randrange(20000, 32600, 200)
    server = start_server(tmp_path / "data", "--pbx", f"rtp:{low}-{low + 199}:interface=127.0.0.1")
    try:
        yield server, (low, low + 199)
    finally:
        stop_server(server)


def cli(server, *lines):
    """
    The CLI's (code, text) answer to each of C{lines}, sent as postmaster on
    one connection: the answer itself for a single line, else a list.
    """
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        answers = [client.command(line) for line in lines]
    return answers[0] if len(answers) == 1 else answers


def configure(server, *lines) -> None:
    """Send C{lines} (CLI commands) as postmaster; each must answer 200."""
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        for line in lines:
            code, text = client.command(line)
            assert code == 200, (line, text)


def router_table(*records: str) -> str:
    """The CLI command that makes C{records} the whole Router table."""
    table = "\\e".join(records)
    return f'SETROUTERTABLE "{table}"'


# -- sipp ------------------------------------------------------------------


def _keys(keys) -> list[str]:
    return [item for key, value in keys.items() for item in ("-key", key, str(value))]


def _csv(workdir, name: str, fields) -> str:
    """Write one SEQUENTIAL row of C{fields} (no C{;} in them: sipp's separator); the file's name."""
    (workdir / name).write_text("SEQUENTIAL\n" + ";".join(str(field) for field in fields) + "\n")
    return name


def _client_argv(server, scenario, csv, timeout, options, keys) -> list[str]:
    return ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-inf", csv, "-m", "1", "-p", "0",
            *options, *_keys(keys), "-timeout", timeout, "-timeout_error", f"127.0.0.1:{server.sip_port}"]


def start_sipp_client(server, workdir, scenario: str, fields, *, csv: str | None = None,
                      timeout: str = "25s", options=SIPP, **keys):
    """
    sipp running C{scenario} once toward C{server} in C{workdir}, with the
    CSV C{fields} (in C{csv}, by default C{<scenario>.csv}) and C{-key}
    values from C{keys} (any text); the running process (see L{finished}).
    C{timeout} is sipp's own; C{options} replace L{SIPP}.
    """
    csv = _csv(workdir, csv or f"{scenario}.csv", fields)
    return subprocess.Popen(
        _client_argv(server, scenario, csv, timeout, options, keys),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )


def run_sipp_client(server, workdir, scenario: str, fields, *, csv: str | None = None,
                    timeout: str = "20s", wait: float = 30, options=SIPP):
    """L{start_sipp_client}, waited for (C{wait} seconds at most); the C{CompletedProcess}."""
    csv = _csv(workdir, csv or f"{scenario}.csv", fields)
    return subprocess.run(
        _client_argv(server, scenario, csv, timeout, options, {}),
        capture_output=True, text=True, cwd=workdir, timeout=wait,
    )


def call(server, workdir, callee: str, rtp_port: int, scenario: str = "uac_app.xml", *,
         timeout: str = "20s", options=SIPP):
    """
    A sipp UAC calling C{callee}@example.com with C{scenario}, its SDP naming
    127.0.0.1:C{rtp_port} (a Python peer's); the running process.
    """
    return start_sipp_client(server, workdir, scenario, [callee, "example.com", rtp_port],
                             timeout=timeout, options=options)


def register(server, workdir, user: str, password: str, contact: str, *, options=SIPP) -> None:
    """REGISTER C{contact} (host:port) for C{user}@example.com with digest; it must succeed."""
    done = run_sipp_client(
        server, workdir, "register_contact.xml",
        [user, "example.com", f"[authentication username={user} password={password}]", contact],
        options=options,
    )
    assert done.returncode == 0, done.stdout + errors(workdir)


def start_sipp_server(directory, scenario: str, port: int, *, timeout: str, options=SIPP, **keys):
    """
    sipp answering one call on 127.0.0.1:C{port} with C{scenario}, in
    C{directory}, C{-key} values from C{keys}; the process, not waited for
    (it listens a moment later: see L{sipp_callee}).
    """
    return subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *options, *_keys(keys),
         "-timeout", timeout, "-timeout_error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=directory,
    )


def sipp_callee(workdir, scenario: str, port: int, **keys):
    """
    sipp answering on 127.0.0.1:C{port} with C{scenario} (C{-key} values
    from C{keys}), in its own directory C{callee-<port>} of C{workdir}; the
    process, listening.
    """
    directory = workdir / f"callee-{port}"
    directory.mkdir()
    process = start_sipp_server(directory, scenario, port, timeout="30s", **keys)
    time.sleep(0.3)
    return process


def answering_phone(server, workdir, user: str, password: str, scenario: str, rtp_port: int | None = None, *,
                    timeout: str = "25s", options=SIPP):
    """
    A sipp UAS registered as C{user} that answers one call with
    C{scenario}, its SDP naming 127.0.0.1:C{rtp_port} (the scenario's
    C{[rtp_port]}) when given; the process, listening.
    """
    port = free_port()
    register(server, workdir, user, password, f"127.0.0.1:{port}", options=options)
    keys = {} if rtp_port is None else {"rtp_port": rtp_port}
    process = start_sipp_server(workdir, scenario, port, timeout=timeout, options=options, **keys)
    time.sleep(0.3)
    return process


def finished(process, timeout: float = 30) -> tuple[int | None, str]:
    """A sipp process's exit code and output once it ends; L{None} and the output if killed after C{timeout}."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def errors(workdir, *, below: bool = False) -> str:
    """What sipp wrote to C{*_errors.log} in C{workdir} (and its subdirectories if C{below}), for messages."""
    found = workdir.rglob("*_errors.log") if below else workdir.glob("*_errors.log")
    return "".join(p.read_text(errors="replace") for p in found)


def logged_ports(workdir, scenario: str, what: str) -> list[int]:
    """The ports a C{scenario} run with L{SIPP_LOGS} logged as C{"<what> port N"}."""
    # sipp names the file SCENARIO_PID_logs.log: match the PID as digits, so
    # that "uas_transparent" does not also read uas_transparent_refers' log
    own = re.compile(rf"{re.escape(scenario)}_\d+_logs\.log\Z")
    text = "".join(p.read_text() for p in workdir.glob(f"{scenario}_*_logs.log") if own.match(p.name))
    return [int(port) for port in re.findall(rf"\b{what} port (\d+)", text)]


# -- media peers -----------------------------------------------------------


class ThreadedPeer:
    """
    The thread of a phone's media side: C{with peer:} runs L{_run} until the
    block ends, then closes what L{_close} closes.  Tests poll what it heard
    with L{wait_for}.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._close()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Whether C{predicate()} came true within C{timeout} seconds (polled every 20 ms)."""
        return bool(wait_for(predicate, timeout, interval=0.02))

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class _UDPPeer(ThreadedPeer):
    """
    A L{ThreadedPeer} with one UDP socket on 127.0.0.1 (C{port}), read 5 ms
    at a time, and one RTP stream (SSRC C{ssrc}) of 20 ms PCMU frames.
    """

    def __init__(self, ssrc: int) -> None:
        super().__init__()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self._ssrc = ssrc
        self._sequence, self._timestamp = 1, 1000

    def _close(self) -> None:
        self.sock.close()

    def _receive(self):
        """
        (RTP packet, or L{None} if it is none, source) of the next datagram
        heard within 5 ms, else L{None}; raises L{OSError} once closed.
        """
        try:
            data, source = self.sock.recvfrom(2048)
        except socket.timeout:
            return None
        try:
            return parse_rtp(data), source
        except RTPError:
            return None, source

    def _send_audio(self, pcm: bytes, remote) -> None:
        """Send 160 samples of L16 C{pcm} to C{remote} as the stream's next PCMU frame."""
        self._send(RTPPacket(0, self._sequence, self._timestamp, self._ssrc, g711.encode("PCMU", pcm)), remote)

    def _send_event(self, event, remote) -> None:
        """Send an RFC 4733 packet (payload type 101) of a key in place of the stream's next frame."""
        self._send(RTPPacket(101, self._sequence, event.timestamp, self._ssrc, event.payload, event.marker), remote)

    def _send(self, packet: RTPPacket, remote) -> None:
        self.sock.sendto(packet.serialize(), remote)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + 160) & 0xFFFFFFFF


class RTPPeer(_UDPPeer):
    """
    A phone's media side in a thread: it waits for the task's first packet
    (symmetric RTP: it answers where that came from), then sends a 20 ms
    frame of its tone (silence for frequency 0) and, when asked, a key as
    RFC 4733 events (L{press}) or as its DTMF tones in the audio
    (L{press_tones}, as a PSTN gateway without telephone-event sends it);
    it keeps what it hears.
    """

    def __init__(self, frequency: float = 0.0) -> None:
        super().__init__(0x5EED)
        self.frequency = frequency
        self.remote = None
        self.heard: list[bytes] = []
        self.frames_sent = 0
        self._keys = TelephoneEventSender(160)
        self._tone_frames: list[bytes] = []

    def press(self, key: str) -> None:
        with self._lock:
            self._keys.send(key)

    def press_tones(self, key: str, seconds: float = 0.1) -> None:
        """Send C{key}'s two tones for C{seconds}, then 100 ms of silence, in place of the tone."""
        pcm = dtmf(key, seconds) + bytes(1600)
        with self._lock:
            self._tone_frames.extend(pcm[start:start + 320] for start in range(0, len(pcm), 320))

    def audio(self) -> bytes:
        with self._lock:
            return b"".join(self.heard)

    def _run(self) -> None:
        tone = ToneGenerator(Tone((self.frequency,), -10.0)) if self.frequency else None
        next_send = None
        while not self._stop.is_set():
            try:
                received = self._receive()
            except OSError:
                return
            if received is not None:
                packet, source = received
                if packet is not None and packet.payload_type == 0:
                    with self._lock:
                        self.heard.append(g711.decode("PCMU", packet.payload))
                if self.remote is None:
                    self.remote = source
                    next_send = time.monotonic()
            if self.remote is None or time.monotonic() < next_send:
                continue
            next_send += 0.02
            with self._lock:
                event = self._keys.tick(self._timestamp)
                keyed = self._tone_frames.pop(0) if self._tone_frames else None
            if event is not None:
                self._send_event(event, self.remote)
            elif keyed is not None:
                self._send_audio(keyed, self.remote)
            else:
                self._send_audio(tone.frame(160) if tone is not None else bytes(320), self.remote)
            self.frames_sent += 1


class SourceRecordingPeer(_UDPPeer):
    """
    A phone's media side in a thread for tests of where media flows
    (transparent bridging, relays): sends a 20 ms PCMU frame of its tone
    every 20 ms to C{remote} (given with L{send_to}, or with C{latch} the
    source of the first packet heard), and keeps each packet it hears with
    its source address.
    """

    def __init__(self, frequency: float, latch: bool = True) -> None:
        super().__init__(random.getrandbits(32))
        self.frequency = frequency
        self.remote = None
        self.latch = latch
        self.heard: list[tuple[tuple[str, int], bytes]] = []

    def send_to(self, remote) -> None:
        with self._lock:
            self.remote = remote

    def packets(self):
        """(source, L16 audio) of each PCMU packet heard so far."""
        with self._lock:
            return list(self.heard)

    def _run(self) -> None:
        tone = ToneGenerator(Tone((self.frequency,), -10.0))
        next_send = time.monotonic()
        while not self._stop.is_set():
            try:
                received = self._receive()
            except OSError:
                return
            if received is not None:
                packet, source = received
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
            self._send_audio(tone.frame(160), remote)


# -- audio checks ----------------------------------------------------------


def windows(pcm: bytes, size: int = 3200):
    """200 ms windows (by default) of L16 C{pcm}, each overlapping the last by half."""
    return [pcm[start:start + size] for start in range(0, len(pcm) - size + 1, size // 2)]


def heard_tone(pcm: bytes, frequency: float) -> bool:
    """Some window of C{pcm} is mostly C{frequency}."""
    return any(energy_fraction(window, frequency) > 0.6 for window in windows(pcm))


def hears(pcm: bytes, frequencies, without: float | None = None, *,
          share: float = 0.6, leak: float = 0.02) -> bool:
    """
    Some window of C{pcm} holds more than C{share} of each of C{frequencies}
    (one or several: a mixer's sum) and, if C{without} is given, less than
    C{leak} of that one (a caller's own tone must not come back).
    """
    wanted = frequencies if isinstance(frequencies, (list, tuple)) else [frequencies]
    return any(
        all(energy_fraction(window, f) > share for f in wanted)
        and (without is None or energy_fraction(window, without) < leak)
        for window in windows(pcm)
    )


def never_hears(pcm: bytes, frequency: float, limit: float = 0.1) -> bool:
    """No window of C{pcm} holds C{limit} or more of C{frequency}."""
    return all(energy_fraction(window, frequency) < limit for window in windows(pcm))


# -- the PBX's state -------------------------------------------------------


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """The first true value of C{predicate()} within C{timeout} seconds (polled every C{interval}), else L{None}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def task_status(server, program: str) -> dict | None:
    """READNODESTATUS of the first running task of C{program}, or L{None}."""
    code, text = cli(server, "LISTPBXTASKS")
    if code != 201 or not text:
        return None
    for task_id in loads(text):
        code, status = cli(server, f"READNODESTATUS {task_id}")
        if code == 201 and status:
            status = loads(status)
            if status.get("Program") == program:
                return status
    return None


def connected_call(server, program: str, timeout: float = 10.0, interval: float = 0.05) -> dict | None:
    """
    The C{Call} status of C{program}'s first task once it is connected
    (asked every C{interval} for C{timeout} seconds), else L{None}.
    """
    def found():
        status = task_status(server, program)
        dialog = None if status is None else status.get("Call")
        return dialog if dialog and dialog.get("State") == "connected" else None

    return wait_for(found, timeout, interval)


def tag_of(value: str) -> str:
    """The tag of a From/To value."""
    return value.split(";tag=", 1)[1].split(";", 1)[0]


def replaces_header(dialog: dict) -> str:
    """A Replaces value (RFC 3891) naming C{dialog}, a task's C{Call} status."""
    return f"{dialog['Call-ID']};to-tag={tag_of(dialog['Local'])};from-tag={tag_of(dialog['Remote'])}"


def remote_party(dialog: dict) -> str:
    """The URI of the remote party of C{dialog}, a task's C{Call} status."""
    return dialog["Remote"].split("<", 1)[1].split(">", 1)[0]
