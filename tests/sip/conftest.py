"""
A SIP service on a L{DatagramClock}: the real service, core and store,
with UDP played in and out of a fake socket, so that SIP exchanges (digest
included) run in unit tests with every timer on the clock.
"""

import itertools
import re

import pytest

from communigate.auth.credentials import digest_ha1, digest_response
from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.sip.message import Response, make_response, parse_message
from communigate.sip.service import SIPService
from communigate.storage import MemoryStore
from communigate.testing import DatagramClock

SERVER = ("127.0.0.1", 5060)
POSTMASTER = CommandContext.for_account("postmaster@example.com")


class SIPHarness:
    def __init__(self, accounts=("alice", "bob", "carol")):
        self.reactor = DatagramClock()
        self.reactor.advance(1_700_000_000)
        self.core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), self.reactor)
        created = create_initial_objects(self.core.directory, "example.com", accounts)
        self.passwords = {address.split("@")[0]: password for address, password in created.items()}
        self.cli("UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}")
        self.service = SIPService(self.core, ["udp:5060:interface=127.0.0.1"], secret=b"k" * 32)
        self.service.startService()
        self.port = self.reactor.udp_ports[0]
        self._branches = itertools.count(1)

    def cli(self, line):
        result = self.core.interpreter.run(POSTMASTER, line)
        assert result.ok, f"{line}: {result.error}"
        return result.data if result.has_data else None

    def stop(self):
        self.service.stopService()

    # -- the wire ------------------------------------------------------------

    def send(self, text, source=("127.0.0.1", 5070)):
        self.port.receive(text.replace("\n", "\r\n").encode() if "\r\n" not in text else text.encode(), source)

    def send_message(self, message, source=("127.0.0.1", 5070)):
        self.port.receive(bytes(message), source)

    def take(self, to=None):
        """The messages the server sent (to C{to} only, when given), parsed."""
        kept, taken = [], []
        for data, address in self.port.written:
            if to is None or address == tuple(to):
                taken.append(parse_message(data))
            else:
                kept.append((data, address))
        self.port.written[:] = kept
        return taken

    def branch(self):
        return f"z9hG4bK-t{next(self._branches)}"

    # -- requests ----------------------------------------------------------------

    def request(self, method, uri, *, user, domain="example.com", to=None, call_id="c1@127.0.0.1", cseq=1,
                from_tag="ft1", to_tag=None, headers=(), body=b"", content_type=None, source=("127.0.0.1", 5070)):
        host, port = source
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={self.branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{domain}>;tag={from_tag}",
            f"To: <{to or uri}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            *[f"{name}: {value}" for name, value in headers],
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def authorized(self, method, uri, *, user, password=None, cseq=1, source=("127.0.0.1", 5070), **kwargs):
        """
        Send a request, answer the 407 with digest credentials, and return
        the final response to the authenticated one, the CSeq used and the
        requests (NOTIFYs) that came with it.
        """
        password = password if password is not None else self.passwords[user]
        self.port.receive(self.request(method, uri, user=user, cseq=cseq, source=source, **kwargs), source)
        first = self.take(source)
        challenge = [m for m in first if isinstance(m, Response)][-1]
        if challenge.status != 407:
            return challenge, cseq, [m for m in first if not isinstance(m, Response)]
        header = challenge.headers.get("Proxy-Authenticate")
        nonce = re.search(r'nonce="([^"]+)"', header).group(1)
        response = digest_response(
            ha1=digest_ha1("MD5", user, "example.com", password), nonce=nonce, method=method, uri=uri,
            algorithm="MD5", qop="auth", nc="00000001", cnonce="abc",
        )
        credentials = (
            f'Digest username="{user}", realm="example.com", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"'
        )
        extra = tuple(kwargs.pop("headers", ())) + (("Proxy-Authorization", credentials),)
        self.port.receive(
            self.request(method, uri, user=user, cseq=cseq + 1, source=source, headers=extra, **kwargs), source
        )
        messages = self.take(source)
        responses = [m for m in messages if isinstance(m, Response)]
        assert responses, "no response to the authenticated request"
        return responses[-1], cseq + 1, [m for m in messages if not isinstance(m, Response)]

    def register(self, user, source, expires=120, contact=None, remove=None):
        """REGISTER C{contact} (and unbind C{remove}) for C{user}, with digest (401)."""
        host, port = source
        contacts = [("Contact", contact or f"<sip:{user}@{host}:{port}>")]
        if remove:
            contacts.append(("Contact", f"{remove};expires=0"))
        uri, to = "sip:example.com", f"sip:{user}@example.com"
        call_id = f"reg-{user}@{host}"
        self._reg_cseq = getattr(self, "_reg_cseq", 0) + 2
        cseq = self._reg_cseq
        self.port.receive(self.request("REGISTER", uri, to=to, user=user, source=source, call_id=call_id, cseq=cseq,
                                       headers=[*contacts, ("Expires", str(expires))]), source)
        (challenge,) = self.take(source)
        assert challenge.status == 401, challenge
        nonce = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate")).group(1)
        answer = digest_response(ha1=digest_ha1("MD5", user, "example.com", self.passwords[user]), nonce=nonce,
                                 method="REGISTER", uri=uri, algorithm="MD5", qop="auth", nc="00000001", cnonce="x")
        credentials = (f'Digest username="{user}", realm="example.com", nonce="{nonce}", uri="{uri}", '
                       f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="x"')
        self.port.receive(self.request("REGISTER", uri, to=to, user=user, source=source, call_id=call_id,
                                       cseq=cseq + 1, headers=[*contacts, ("Expires", str(expires)),
                                                               ("Authorization", credentials)]), source)
        (response,) = self.take(source)
        return response

    def answer(self, request, status=200, source=("127.0.0.1", 5070)):
        self.port.receive(bytes(make_response(request, status, to_tag="uatag")), source)


@pytest.fixture
def sip():
    harness = SIPHarness()
    yield harness
    harness.stop()
