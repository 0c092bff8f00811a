"""
Helpers for tests of communigate and of applications built on it.

L{served_zone} serves ENUM (NAPTR) records from 127.0.0.1 for routing
tests, L{served_records} any records (SRV, A, NAPTR ...) for SIP location
tests; L{make_certificates} writes a throw-away CA and certificates for TLS
tests; L{start_server} runs a real C{twistd -n communigate} in a child process on
127.0.0.1 with free ports, for integration tests against real clients;
L{MemoryUDPReactor} is a L{MemoryReactorClock} that can also listen on
UDP, for unit tests of datagram services such as SIP.
"""

import base64
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time

import attrs
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import MessageLengthError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.names import dns as tdns
from twisted.names import error, server
from twisted.names.common import ResolverBase

START_TIMEOUT = 30.0


def free_port() -> int:
    """
    A port of 127.0.0.1 free for TCP and for UDP (SIP listens on both; on
    a shared machine other processes hold many UDP ports).
    """
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port of 127.0.0.1 is free for both TCP and UDP")


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
    xmpp_port: int = 0
    xmpp_s2s_port: int = 0

    def output(self) -> str:
        """
        What the server has printed so far (its log).
        """
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def start_server(data_dir, *extra, domain="example.com", twistd_options=()) -> LiveServer:
    """
    Start C{twistd communigate} on C{data_dir}, its CLI, HTTP, SIP, XMPP
    and XMPP server-to-server listeners on free ports of 127.0.0.1; return
    once the CLI and the other stream listeners accept connections.

    @param twistd_options: options for twistd itself, before the
        C{communigate} subcommand (a benchmark's C{--profile=FILE}).
    """
    cli_port, http_port, sip_port, xmpp_port = free_port(), free_port(), free_port(), free_port()
    xmpp_s2s_port = free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    # A file, not a pipe: a pipe nobody reads fills up and stops the server.
    log_path = f"{data_dir}.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [
            twistd, "--nodaemon", "--pidfile=", *twistd_options, "communigate",
            "--data", str(data_dir), "--domain", domain,
            "--cli", f"tcp:{cli_port}:interface=127.0.0.1",
            "--http", f"tcp:{http_port}:interface=127.0.0.1",
            "--sip", f"udp:{sip_port}:interface=127.0.0.1",
            "--sip", f"tcp:{sip_port}:interface=127.0.0.1",
            "--xmpp", f"tcp:{xmpp_port}:interface=127.0.0.1",
            "--xmpp-s2s", f"tcp:{xmpp_s2s_port}:interface=127.0.0.1",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log.close()
    try:
        seconds = wait_for_port(cli_port, process, START_TIMEOUT, log_path)
        # The other stream listeners open in the same reactor turn or the
        # next; a test may connect to any of them at once.
        for option, port in (
            ("--xmpp", xmpp_port), ("--xmpp-s2s", xmpp_s2s_port), ("--sip", sip_port), ("--http", http_port)
        ):
            if option not in extra:
                wait_for_port(port, process, START_TIMEOUT, log_path)
    except BaseException:
        process.kill()
        raise
    with open(os.path.join(data_dir, "postmaster-password")) as f:
        _account, password = f.read().split()
    return LiveServer(
        process, str(data_dir), cli_port, http_port, sip_port, password, seconds, log_path, xmpp_port,
        xmpp_s2s_port,
    )


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


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


class RecordZone(ResolverBase):
    """
    Answers questions of any type from a dict C{{(name, type): [payload,
    ...]}} (C{type} a C{twisted.names.dns} type code such as C{dns.SRV}) and
    records them as C{(name, type)} in C{questions}.  A name that has
    records of other types only answers with none (it exists); any other
    name does not exist (NXDOMAIN).
    """

    def __init__(self, records, ttl=60):
        super().__init__()
        self.records = records
        self.ttl = ttl
        self.questions = []

    def _lookup(self, name, cls, type, timeout):
        self.questions.append((name, type))
        if (name, type) in self.records:
            answers = [
                tdns.RRHeader(name, type, tdns.IN, self.ttl, payload, auth=True)
                for payload in self.records[(name, type)]
            ]
            return defer.succeed((answers, [], []))
        if any(known == name for known, _ in self.records):
            return defer.succeed(([], [], []))
        return defer.fail(error.DomainError(name))

    def asked(self, name, type) -> bool:
        return (name, type) in self.questions


def served_records(records, reactor=None):
    """
    A DNS server on an ephemeral UDP port of 127.0.0.1 answering from
    C{records} as L{RecordZone} does; returns the zone and the listening
    port.
    """
    if reactor is None:
        from twisted.internet import reactor
    zone = RecordZone(records)
    factory = server.DNSServerFactory(authorities=[zone])
    port = reactor.listenUDP(0, tdns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    return zone, port


@attrs.frozen
class CertificateFiles:
    """
    PEM files written by L{make_certificates}: C{ca} (the CA's
    certificate), C{server} and C{client} (each a certificate and its
    private key in one file).
    """

    ca: str
    server: str
    client: str


def make_certificates(directory, server_names=("secure.test",), server_addresses=()) -> CertificateFiles:
    """
    Write a throw-away CA, a server certificate it signed for
    C{server_names} (DNS names) and C{server_addresses} (IP addresses),
    and a client certificate it signed, as PEM files in C{directory}.
    Keys are P-256; everything is valid from a day ago for 30 days.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def issue(subject, key, issuer, issuer_key, *, ca=False, sans=(), usage=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem(certificate, key=None):
        data = certificate.public_bytes(serialization.Encoding.PEM)
        if key is not None:
            data += key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        return data

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("communigate test CA")
    ca = issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(n) for n in server_names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in server_addresses
    ]
    server_cert = issue(
        name(server_names[0] if server_names else "server"), server_key, ca_name, ca_key,
        sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = issue(
        name("communigate test client"), client_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    paths = CertificateFiles(
        os.path.join(directory, "ca.pem"), os.path.join(directory, "server.pem"), os.path.join(directory, "client.pem")
    )
    for path, data in ((paths.ca, pem(ca)), (paths.server, pem(server_cert, server_key)),
                       (paths.client, pem(client_cert, client_key))):
        with open(path, "wb") as f:
            f.write(data)
    return paths

class FakeUDPPort:
    """
    A UDP port of L{MemoryUDPReactor}: what its protocol writes is kept in
    C{written} as C{(data, address)}; C{receive} plays a datagram in.
    """

    def __init__(self, protocol, host: str, port: int) -> None:
        self.protocol = protocol
        self.written: list[tuple[bytes, tuple]] = []
        self.listening = True
        kind = IPv6Address if ":" in host else IPv4Address
        self._host = kind("UDP", host, port)
        protocol.makeConnection(self)

    def getHost(self):
        return self._host

    #: The longest datagram a real IPv4 UDP socket sends.
    max_datagram = 65507

    def write(self, data: bytes, addr=None) -> None:
        if len(data) > self.max_datagram:
            # What a real port's sendto does with EMSGSIZE.
            raise MessageLengthError("message too long")
        self.written.append((data, addr))

    def receive(self, data: bytes, addr: tuple) -> None:
        self.protocol.datagramReceived(data, addr)

    def stopListening(self):
        # Twice (a service stopping a port its parent stops too) is once,
        # as with a real port.
        if self.listening:
            self.listening = False
            self.protocol.doStop()

    loseConnection = stopListening


class MemoryUDPReactor(MemoryReactorClock):
    """
    A memory reactor and clock whose C{listenUDP} gives L{FakeUDPPort}s
    (port 0 picks the next free number from 40000), kept in C{udp_ports}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udp_ports: list[FakeUDPPort] = []
        self._next_port = 40000

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if port == 0:
            port = self._next_port
            self._next_port += 1
        listening = FakeUDPPort(protocol, interface or "0.0.0.0", port)
        self.udp_ports.append(listening)
        return listening

# The name the SIP presence tests know it by.
DatagramClock = MemoryUDPReactor


class ScramClient:
    """
    The client side of SCRAM (RFC 5802 section 3), written from the RFC
    and independent of the server's code, for tests of SASL front ends.
    """

    def __init__(self, hash_name, username, password, nonce="fyko+d2lbbFgONRv9qkxdawL", authzid=None, flag="n"):
        self.hash_name = hash_name
        self.password = password
        self.nonce = nonce
        name = username.replace("=", "=3D").replace(",", "=2C")
        authz = "" if authzid is None else "a=" + authzid.replace("=", "=3D").replace(",", "=2C")
        self.gs2 = f"{flag},{authz},"
        self.bare = f"n={name},r={nonce}"
        self.expected_server_signature = b""

    def first(self) -> bytes:
        """
        The client-first-message.
        """
        return (self.gs2 + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        """
        The client-final-message answering C{server_first}.
        """
        fields = dict(field.split("=", 1) for field in server_first.decode().split(","))
        salt = base64.b64decode(fields["s"])
        salted = hashlib.pbkdf2_hmac(self.hash_name, self.password.encode(), salt, int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", self.hash_name)
        stored = hashlib.new(self.hash_name, client_key).digest()
        without_proof = "c=" + base64.b64encode(self.gs2.encode()).decode() + ",r=" + fields["r"]
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored, auth_message, self.hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.digest(salted, b"Server Key", self.hash_name)
        self.expected_server_signature = hmac.digest(server_key, auth_message, self.hash_name)
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify(self, server_final: bytes) -> bool:
        """
        Whether the server-final-message proves the server holds the keys.
        """
        return server_final == b"v=" + base64.b64encode(self.expected_server_signature)


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """
    A L{StringTransport} that can be told to start TLS: it records the
    context and marks the point in the output where TLS began.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tls_context = None
        self.tls_started_at = None

    def startTLS(self, contextFactory, *args, **kwargs):
        self.tls_context = contextFactory
        self.tls_started_at = len(self.value())
