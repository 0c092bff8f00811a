"""
rtpengine as the reference media relay in benchmarks/media_relay.py.

    install()                  the rtpengine binary, apt-get installing
                               `rtpengine-daemon` if need be (None if not)
    start(work, low, high)     rtpengine in the foreground as a child of this
                               process, in user space (no kernel module:
                               --table=-1), its NG control socket on a free
                               UDP port of 127.0.0.1, media on 127.0.0.1
                               ports LOW..HIGH; returns an RTPEngine
    engine.open(call, caller_port, callee_port) -> (caller_leg, callee_leg)
                               offer + answer over NG: the ports each party
                               must send to
    engine.close(call)         delete
    engine.cpu()               its CPU seconds (all threads) so far
    engine.stop()              SIGTERM (SIGKILL after 15 s)

The NG protocol is a cookie, a space and a bencoded dictionary, over UDP;
the answer repeats the cookie.  bencode (integers, strings, lists,
dictionaries with sorted keys) is written here, a few lines each way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid

import attrs

import debian_package

START_TIMEOUT = 15.0


# -- bencode -------------------------------------------------------------------


def bencode(value) -> bytes:
    """C{value} (int, str, bytes, list, tuple, dict with str keys) bencoded."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    if isinstance(value, dict):
        items = sorted((key.encode() if isinstance(key, str) else key, item) for key, item in value.items())
        return b"d" + b"".join(bencode(key) + bencode(item) for key, item in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes):
    """The value C{data} holds (strings as bytes); ValueError when it is not exactly one bencoded value."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"bencode: {len(data) - end} octets after the value")
    return value


def _decode(data: bytes, at: int):
    if at >= len(data):
        raise ValueError("bencode: truncated")
    kind = data[at:at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if kind in (b"l", b"d"):
        at += 1
        items = []
        while data[at:at + 1] != b"e":
            if at >= len(data):
                raise ValueError("bencode: truncated")
            item, at = _decode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        if len(items) % 2:
            raise ValueError("bencode: a dictionary key without a value")
        return dict(zip(items[::2], items[1::2])), at + 1
    if kind.isdigit():
        colon = data.index(b":", at)
        length = int(data[at:colon])
        end = colon + 1 + length
        if end > len(data):
            raise ValueError("bencode: truncated string")
        return data[colon + 1:end], end
    raise ValueError(f"bencode: unexpected {kind!r} at {at}")


# -- the daemon ----------------------------------------------------------------


def install() -> str | None:
    """The rtpengine binary, `rtpengine-daemon` installed first if need be; None when that cannot be done."""
    return debian_package.ensure("rtpengine", "rtpengine-daemon", "/usr/bin/rtpengine")


def version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True)
    match = re.search(r"Version:\s*(\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "unknown version"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdp(port: int) -> str:
    """A PCMU offer or answer receiving on 127.0.0.1:C{port}."""
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


class NGError(Exception):
    """rtpengine answered a command with an error, or not at all."""


@attrs.define
class RTPEngine:
    process: subprocess.Popen
    control: tuple[str, int]
    log_path: str
    sock: socket.socket = attrs.field(factory=lambda: _control_socket())

    def command(self, name: str, timeout: float = 2.0, **arguments) -> dict:
        """One NG command: C{name} with C{arguments} (underscores become hyphens); the answer."""
        cookie = uuid.uuid4().hex[:12].encode()
        message = {"command": name, **{key.replace("_", "-"): value for key, value in arguments.items()}}
        self.sock.settimeout(timeout)
        self.sock.sendto(cookie + b" " + bencode(message), self.control)
        while True:
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                raise NGError(f"no answer to {name} within {timeout} s") from None
            got, _, body = data.partition(b" ")
            if got == cookie:
                break
        answer = bdecode(body)
        if answer.get(b"result") not in (b"ok", b"pong"):
            raise NGError(f"{name}: {answer.get(b'result')!r} {answer.get(b'error-reason', b'')!r}")
        return answer

    def open(self, call: str, caller_port: int, callee_port: int) -> tuple[int, int]:
        """
        Offer the caller's SDP, answer with the callee's: the ports of
        rtpengine that the caller and the callee send to.
        """
        offer = self.command("offer", call_id=call, from_tag=f"{call}-a", sdp=sdp(caller_port))
        callee_leg = _media_port(offer[b"sdp"])
        answer = self.command("answer", call_id=call, from_tag=f"{call}-a", to_tag=f"{call}-b",
                              sdp=sdp(callee_port))
        return _media_port(answer[b"sdp"]), callee_leg

    def close(self, call: str) -> None:
        self.command("delete", call_id=call, from_tag=f"{call}-a")

    def cpu(self) -> float:
        """User and system CPU seconds of the daemon, all its threads."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        self.sock.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _control_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _media_port(body: bytes) -> int:
    match = re.search(rb"^m=audio (\d+) ", body, re.M)
    if not match:
        raise NGError(f"no audio port in rtpengine's SDP: {body[:300]!r}")
    return int(match.group(1))


def start(work: str, low: int, high: int, binary: str = "rtpengine", threads: int | None = None) -> RTPEngine:
    """
    Run rtpengine in the foreground in user space (--table=-1: no kernel
    forwarding), logging warnings to WORK/rtpengine.log, NG control on a
    free UDP port of 127.0.0.1, media ports LOW..HIGH on 127.0.0.1, with
    THREADS worker threads (default: rtpengine's, one per core); return
    once it answers a ping.
    """
    port = free_udp_port()
    log_path = os.path.join(work, "rtpengine.log")
    command = [
        binary, "--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=4",
        f"--listen-ng=127.0.0.1:{port}", "--interface=127.0.0.1",
        f"--port-min={low}", f"--port-max={high}", "--timeout=3600", "--silent-timeout=3600",
        "--delete-delay=0",
    ]
    if threads:
        command.append(f"--num-threads={threads}")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    engine = RTPEngine(process, ("127.0.0.1", port), log_path)
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"rtpengine exited with {process.returncode}: {engine.output()[-2000:]}")
        try:
            engine.command("ping", timeout=0.2)
            return engine
        except (NGError, OSError):
            pass
        if time.monotonic() - started > START_TIMEOUT:
            engine.stop()
            raise RuntimeError(f"rtpengine did not answer on udp {port} within {START_TIMEOUT} s: "
                               f"{engine.output()[-2000:]}")
