"""
Helpers for tests of communigate and of applications built on it.

L{served_zone} serves ENUM (NAPTR) records from 127.0.0.1 for routing
tests; L{start_server} runs a real C{twistd -n communigate} in a child process on
127.0.0.1 with free ports, for integration tests against real clients.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import attrs
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.names import dns as tdns
from twisted.names import error, server
from twisted.names.common import ResolverBase

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, log_path: str = "") -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            output = open(log_path).read() if log_path else ""
            raise RuntimeError(f"server exited with {process.returncode}: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


@attrs.define
class LiveServer:
    process: subprocess.Popen
    data_dir: str
    cli_port: int
    http_port: int
    sip_port: int
    postmaster_password: str
    start_seconds: float

    log_path: str = ""

    def output(self) -> str:
        """
        What the server has printed so far (its log).
        """
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def start_server(data_dir, *extra, domain="example.com") -> LiveServer:
    """
    Start C{twistd communigate} on C{data_dir}, its CLI and HTTP listeners
    on free ports of 127.0.0.1; return once the CLI accepts connections.
    """
    cli_port, http_port, sip_port = free_port(), free_port(), free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    # A file, not a pipe: a pipe nobody reads fills up and stops the server.
    log_path = f"{data_dir}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            twistd, "--nodaemon", "--pidfile=", "communigate",
            "--data", str(data_dir), "--domain", domain,
            "--cli", f"tcp:{cli_port}:interface=127.0.0.1",
            "--http", f"tcp:{http_port}:interface=127.0.0.1",
            "--sip", f"udp:{sip_port}:interface=127.0.0.1",
            "--sip", f"tcp:{sip_port}:interface=127.0.0.1",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log.close()
    try:
        seconds = wait_for_port(cli_port, process, START_TIMEOUT, log_path)
    except BaseException:
        process.kill()
        raise
    with open(os.path.join(data_dir, "postmaster-password")) as f:
        _account, password = f.read().split()
    return LiveServer(process, str(data_dir), cli_port, http_port, sip_port, password, seconds, log_path)


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


class FakeUDPPort:
    """
    A UDP "socket" of L{DatagramClock}: what the protocol writes is kept
    in C{written} as C{(data, address)}; C{receive} plays a datagram in.
    """

    def __init__(self, port: int, protocol, interface: str) -> None:
        self.protocol = protocol
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        self._host = IPv4Address("UDP", interface or "0.0.0.0", port or 5060)
        protocol.transport = self
        protocol.doStart()

    def write(self, data: bytes, address) -> None:
        self.written.append((data, tuple(address)))

    def receive(self, data: bytes, address) -> None:
        self.protocol.datagramReceived(data, tuple(address))

    def getHost(self) -> IPv4Address:
        return self._host

    def stopListening(self):
        self.listening = False
        self.protocol.doStop()
        return defer.succeed(None)


class DatagramClock(Clock):
    """
    A L{Clock} that can also listen on UDP, with L{FakeUDPPort}s: enough
    reactor for a SIP service in unit tests, every timer driven by
    C{advance}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udp_ports: list[FakeUDPPort] = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = FakeUDPPort(port, protocol, interface)
        self.udp_ports.append(listening)
        return listening


class NaptrZone(ResolverBase):
    """
    Answers NAPTR questions from a dict and counts them; any other name
    does not exist.
    """

    def __init__(self, records):
        super().__init__()
        self.records = records
        self.queries = []

    def lookupNamingAuthorityPointer(self, name, timeout=None):
        self.queries.append(name)
        if name not in self.records:
            return defer.fail(error.DomainError(name))
        answers = [
            tdns.RRHeader(name, tdns.NAPTR, tdns.IN, 300, payload, auth=True)
            for payload in self.records[name]
        ]
        return defer.succeed((answers, [], []))


def served_zone(records, reactor=None):
    """
    A DNS server on an ephemeral UDP port of 127.0.0.1 answering NAPTR
    questions from C{records} (name -> list of C{Record_NAPTR}); returns
    the zone (which counts the questions) and the listening port.
    """
    if reactor is None:
        from twisted.internet import reactor
    zone = NaptrZone(records)
    factory = server.DNSServerFactory(authorities=[zone])
    port = reactor.listenUDP(0, tdns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    return zone, port
