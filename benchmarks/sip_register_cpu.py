"""
CPU cost of one authenticated registration inside the server, without
sockets or sipp: REGISTER → 401 → REGISTER with an MD5 digest → 200,
fed to the SIP service as UDP datagrams from distinct users, over the
real core (SQLite directory with the accounts, bindings store, portal,
transaction layer).  Prints registrations per second of one core, and
with C{--profile} the functions that cost the most.

    python benchmarks/sip_register_cpu.py [ACCOUNTS] [--profile]

This is the figure the sipp benchmark (sip_load.py) can at best reach
with sipp and the kernel taking their share of the cores.
"""

import cProfile
import hashlib
import os
import pstats
import re
import sys
import tempfile
import time

from twisted.internet import reactor

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects, open_data_directory
from communigate.server import build_core
from communigate.sip.service import SIPService
from communigate.sip.transport import Flow
from communigate.tap import tune_garbage_collector

LOCAL = ("127.0.0.1", 5060)


class CapturingSocket:
    """Stands in for the UDP listener: keeps what the server sends."""

    def __init__(self):
        self.sent = []

    def write(self, data, remote):
        self.sent.append(data)


def register(user: int, cseq: int, port: int, authorization: str = "") -> bytes:
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{user}-{cseq};rport",
        "Max-Forwards: 70",
        f"From: <sip:u{user}@example.com>;tag={user}",
        f"To: <sip:u{user}@example.com>",
        f"Call-ID: {user}-reg@127.0.0.1",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:u{user}@127.0.0.1:{port}>",
        "Expires: 3600",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authorization(user: int, challenge: bytes) -> str:
    nonce = re.search(rb'nonce="([^"]+)"', challenge).group(1).decode()
    realm = "example.com"
    ha1 = md5(f"u{user}:{realm}:p{user}")
    ha2 = md5("REGISTER:sip:example.com")
    response = md5(f"{ha1}:{nonce}:00000001:abcdef:auth:{ha2}")
    return (
        f'Digest username="u{user}", realm="{realm}", nonce="{nonce}", uri="sip:example.com", '
        f'response="{response}", algorithm=MD5, cnonce="abcdef", qop=auth, nc=00000001'
    )


def build(work: str, accounts: int):
    store = open_data_directory(os.path.join(work, "data"))
    context = build_core(Config(data_dir=os.path.join(work, "data"), domain="example.com"), store, reactor)
    create_initial_objects(context.directory, "example.com")
    admin = CommandContext.for_account("postmaster@example.com")
    run = context.interpreter.run
    run(admin, "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}")
    for i in range(accounts):
        run(admin, f"CREATEACCOUNT u{i} {{Password = p{i};}}")
    service = SIPService(context, ())
    tune_garbage_collector()  # as twistd communigate does
    service.startService()
    socket = CapturingSocket()
    service.transport._udp[LOCAL] = socket
    service.rate_limiter.reconfigure(10**9, 10**9)
    return service, socket


def one_round(service, socket, users: range, cseq: int) -> int:
    ok = 0
    for user in users:
        flow = Flow("udp", LOCAL, ("127.0.0.1", 20000 + user % 40000))
        socket.sent.clear()
        service.transport.datagram_received(register(user, cseq, flow.remote[1]), flow)
        challenge = socket.sent[-1]
        socket.sent.clear()
        data = register(user, cseq + 1, flow.remote[1], authorization(user, challenge))
        service.transport.datagram_received(data, flow)
        ok += bool(socket.sent) and socket.sent[-1].startswith(b"SIP/2.0 200")
    return ok


def main(accounts: int = 2000, profile: bool = False) -> None:
    with tempfile.TemporaryDirectory() as work:
        service, socket = build(work, accounts)
        users = range(accounts)
        one_round(service, socket, users, 1)  # warm caches, first bindings
        # The client side (building messages, MD5 for the answer) is timed
        # separately and taken off.
        started = time.process_time()
        for user in users:
            register(user, 3, 5060)
            authorization(user, b'nonce="00"')
        client = time.process_time() - started
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        # Best of three rounds: other work on the machine only adds time.
        best = None
        for round_number in range(1 if profile else 3):
            started = time.process_time()
            ok = one_round(service, socket, users, 3 + 2 * round_number)
            service.bindings.flush()  # the batched writes belong to the cost
            elapsed = time.process_time() - started - client
            best = elapsed if best is None else min(best, elapsed)
        elapsed = best
        if profiler:
            profiler.disable()
        print(f"{ok}/{accounts} registrations answered 200; best round {elapsed:.2f} s of server CPU")
        print(f"{accounts / elapsed:,.0f} registrations/s ({elapsed / accounts * 1e6:.0f} µs each, 2 requests + 2 responses)")
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        service.stopService()


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(arguments[0]) if arguments else 2000, "--profile" in sys.argv)
