"""
XMPP load: N clients log in (STARTTLS, SASL SCRAM-SHA-1, resource
binding, initial presence) and exchange messages; printed for
communigate and for Prosody (Debian package `prosody`) side by side:

  - logins per second (all N, 100 at a time),
  - messages routed per second with N clients connected (each client
    sends M messages to other clients' full JIDs),
  - the server's memory per connected session (RSS with N sessions less
    RSS before any client connected, over N).

    python benchmarks/xmpp_load.py [--clients 1000] [--messages 10] [--only communigate|prosody]

The load client is raw XML over asyncio streams in this process (not a
server: the project's Twisted-only rule is for the server), the same for
both servers. SCRAM's PBKDF2 is the client's cost, not the server's: a
first, untimed pass of logins learns every user's salt, and the timed
pass reuses the salted passwords, so that the figure is the server's.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import random
import re
import ssl
import subprocess
import sys
import tempfile
import time

DOMAIN = "example.com"
ITERATIONS = 4096
HEADER = (
    f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
_SALTED: dict[tuple, bytes] = {}
_MESSAGE_TAG = re.compile(rb"<message\b[^>]*>")
_ERROR_TYPE = re.compile(rb"type=[\"']error")


class Client:
    """One XMPP client connection, read with a buffer and regexes."""

    def __init__(self, name: str, password: str) -> None:
        self.name = name
        self.password = password
        self.jid = f"{name}@{DOMAIN}/load"
        self.reader = self.writer = None
        self.buffer = b""
        self.received = 0
        self._pump = None

    async def _until(self, pattern: bytes, timeout: float = 30.0) -> re.Match:
        expression = re.compile(pattern, re.S)
        end = time.monotonic() + timeout
        while True:
            found = expression.search(self.buffer)
            if found is not None:
                self.buffer = self.buffer[found.end():]
                return found
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {pattern!r} in {self.buffer[-300:]!r}")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                raise ConnectionError(f"{self.name}: closed; last {self.buffer[-300:]!r}")
            self.buffer += data

    def _send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def login(self, port: int, tls: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._send(HEADER)
        await self._until(rb"</stream:features>")
        self._send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self._until(rb"<proceed[^>]*/>")
        await self.writer.start_tls(tls, server_hostname=DOMAIN)
        self.buffer = b""
        self._send(HEADER)
        await self._until(rb"</stream:features>")
        nonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={self.name},r={nonce}"
        self._send(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"
            + base64.b64encode(("n,," + bare).encode()).decode() + "</auth>"
        )
        found = await self._until(rb"<challenge[^>]*>([^<]*)</challenge>")
        server_first = base64.b64decode(found.group(1)).decode()
        fields = dict(field.split("=", 1) for field in server_first.split(","))
        salt, count = base64.b64decode(fields["s"]), int(fields["i"])
        key = (self.password, salt, count)
        salted = _SALTED.get(key)
        if salted is None:
            salted = _SALTED[key] = hashlib.pbkdf2_hmac("sha1", self.password.encode(), salt, count)
        client_key = hmac.digest(salted, b"Client Key", "sha1")
        stored = hashlib.sha1(client_key).digest()
        without_proof = "c=biws,r=" + fields["r"]
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        proof = bytes(a ^ b for a, b in zip(client_key, hmac.digest(stored, auth_message, "sha1")))
        final = without_proof + ",p=" + base64.b64encode(proof).decode()
        self._send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final.encode()).decode() + "</response>")
        await self._until(rb"<success[^>]*(/>|>[^<]*</success>)")
        self.buffer = b""
        self._send(HEADER)
        await self._until(rb"</stream:features>")
        self._send(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>load</resource></bind></iq>"
        )
        await self._until(rb"<iq[^>]*id=.b1.[^>]*>.*?</iq>")
        self._send("<presence/>")

    def start_counting(self) -> None:
        self._pump = asyncio.ensure_future(self._count())

    async def _count(self) -> None:
        """
        Count the messages delivered (start tags, not error bounces),
        reading up to the last complete tag of each chunk.
        """
        pending = self.buffer
        while True:
            cut = pending.rfind(b">") + 1
            self.received += sum(
                1 for tag in _MESSAGE_TAG.findall(pending[:cut]) if not _ERROR_TYPE.search(tag)
            )
            pending = pending[cut:]
            data = await self.reader.read(65536)
            if not data:
                return
            pending += data

    def send_message(self, to: str, number: int) -> None:
        self._send(f"<message to='{to}' type='chat' id='m{number}'><body>load message {number}</body></message>")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self.writer is not None:
            try:
                self._send("</stream:stream>")
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass


def tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def log_in_all(clients, port: int, concurrency: int = 100) -> float:
    tls = tls_context()
    gate = asyncio.Semaphore(concurrency)

    async def one(client):
        async with gate:
            await client.login(port, tls)

    started = time.perf_counter()
    await asyncio.gather(*(one(client) for client in clients))
    return time.perf_counter() - started


async def exchange(clients, per_client: int, bare: bool = False, timeout: float = 120.0) -> tuple[int, float]:
    """Every client sends per_client messages to others; the time until
    all have arrived (or the timeout)."""
    for client in clients:
        client.received = 0
        client.start_counting()
    await asyncio.sleep(0.5)  # late presence and the like arrive first
    for client in clients:
        client.received = 0
    expected = len(clients) * per_client
    chooser = random.Random(7)
    started = time.perf_counter()
    for number in range(per_client):
        for client in clients:
            peer = clients[chooser.randrange(len(clients))]
            if peer is client:
                peer = clients[(clients.index(client) + 1) % len(clients)]
            client.send_message(peer.jid.split("/")[0] if bare else peer.jid, number)
        await asyncio.sleep(0)
    while sum(c.received for c in clients) < expected and time.perf_counter() - started < timeout:
        await asyncio.sleep(0.02)
    return sum(c.received for c in clients), time.perf_counter() - started


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def measure(port: int, pid: int, users, per_client: int, bare: bool = False) -> dict:
    idle = rss_mb(pid)
    warm = [Client(name, password) for name, password in users]
    await log_in_all(warm, port)  # learns the salts; not timed
    for client in warm:
        await client.close()
    await asyncio.sleep(1.0)
    clients = [Client(name, password) for name, password in users]
    cpu = time.process_time()
    elapsed = await log_in_all(clients, port)
    client_cpu = time.process_time() - cpu
    await asyncio.sleep(0.5)
    connected = rss_mb(pid)
    received, routing = await exchange(clients, per_client, bare)
    for client in clients:
        await client.close()
    return {
        "logins": len(clients) / elapsed,
        "login_client_cpu": client_cpu / elapsed,
        "messages": received / routing if routing else 0.0,
        "delivered": received,
        "expected": len(clients) * per_client,
        "kb_per_session": (connected - idle) * 1024 / len(clients),
        "idle_mb": idle,
        "connected_mb": connected,
    }


def communigate(users, per_client: int, bare: bool) -> dict:
    from communigate.admin.client import CLIClient
    from communigate.testing import start_server, stop_server

    with tempfile.TemporaryDirectory() as work:
        server = start_server(os.path.join(work, "data"))
        try:
            with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
                client.login("postmaster", server.postmaster_password)
                client.command("UPDATEXMPPSETTINGS {MaxAuthFailures = 3;}")
            script = os.path.join(work, "accounts.txt")
            with open(script, "w") as f:
                for name, password in users:
                    f.write(f"CREATEACCOUNT {name} {{Password = {password};}}\n")
            admin = os.path.join(os.path.dirname(sys.executable), "communigate-admin")
            subprocess.run([admin, "--data", server.data_dir, "--file", script], check=True, capture_output=True)
            return asyncio.run(measure(server.xmpp_port, server.process.pid, users, per_client, bare))
        finally:
            stop_server(server)


def prosody(users, per_client: int, bare: bool) -> dict | None:
    sys.path.insert(0, os.path.dirname(__file__))
    import prosody_peer
    from communigate.testing import free_port

    binary = prosody_peer.ensure_installed()
    if binary is None:
        print("Prosody is not installed and cannot be installed here: measuring communigate alone")
        return None
    with tempfile.TemporaryDirectory() as work:
        peer = prosody_peer.Prosody(binary, work, DOMAIN, free_port(), ITERATIONS)
        peer.start(users)
        try:
            print(f"Prosody: {prosody_peer.version(binary)}")
            return asyncio.run(measure(peer.port, peer.process.pid, users, per_client, bare))
        finally:
            peer.stop()


def show(name: str, figures: dict | None) -> None:
    if figures is None:
        return
    print(
        f"{name:11} logins {figures['logins']:7.0f}/s (load client busy {figures['login_client_cpu']:.0%})"
        f" | messages {figures['messages']:7.0f}/s ({figures['delivered']}/{figures['expected']} delivered)"
        f" | {figures['kb_per_session']:6.1f} KB per session"
        f" (RSS idle {figures['idle_mb']:.0f} MB, connected {figures['connected_mb']:.0f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=10, help="messages each client sends")
    parser.add_argument("--only", choices=("communigate", "prosody"))
    parser.add_argument(
        "--bare", action="store_true",
        help="address messages to bare JIDs (communigate routes those through the Signal service)",
    )
    options = parser.parse_args()
    users = [(f"u{i}", f"p{i}") for i in range(options.clients)]
    where = "bare JIDs" if options.bare else "full JIDs"
    print(
        f"{options.clients} clients, STARTTLS + SCRAM-SHA-1 + bind + presence;"
        f" {options.messages} messages each to {where}"
    )
    ours = theirs = None
    if options.only != "prosody":
        ours = communigate(users, options.messages, options.bare)
        show("communigate", ours)
    if options.only != "communigate":
        theirs = prosody(users, options.messages, options.bare)
        show("Prosody", theirs)
    if ours and theirs:
        print(
            f"communigate/Prosody: logins {ours['logins'] / theirs['logins']:.2f}, "
            f"messages {ours['messages'] / max(theirs['messages'], 1e-9):.2f}, "
            f"memory per session {ours['kb_per_session'] / max(theirs['kb_per_session'], 1e-9):.2f}"
        )


if __name__ == "__main__":
    main()
