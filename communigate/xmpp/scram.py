"""
The server side of SCRAM (RFC 5802, RFC 7677 for SHA-256), sans-IO.

L{ScramServer} is the exchange as a state machine, bytes in and bytes out:

  1. the client-first-message gives the username and the client nonce; the
     server answers with the server-first-message (combined nonce, salt,
     iteration count) taken from the stored keys;
  2. the client-final-message carries the proof; the machine checks the
     message (channel binding, nonce) and returns
     L{communigate.auth.credentials.ScramCredentials}, which the caller
     hands to the cred portal, where L{communigate.auth.checkers.ScramChecker}
     verifies the proof against the StoredKey;
  3. once the portal accepted, L{ScramServer.server_final} is the
     server-final-message (C{v=} ServerSignature).

Channel binding (the C{-PLUS} variants) is not offered, so a client may
send the C{n} or C{y} flag but not C{p=}.  For a user without keys the
server answers with a decoy salt derived from the name, the same on every
attempt, so the exchange does not tell whether an account exists.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
from collections.abc import Callable

import attrs

from communigate.auth.credentials import ScramCredentials, server_signature
from communigate.auth.passwords import DEFAULT_ITERATIONS, ScramSecrets

#: SASL mechanism names by hashlib name.
MECHANISMS = {"sha256": "SCRAM-SHA-256", "sha1": "SCRAM-SHA-1"}

NONCE_BYTES = 18

# RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no comma).
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
_ATTRIBUTE = re.compile(r"[A-Za-z]\Z")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")


class ScramError(Exception):
    """
    The exchange failed.

    @ivar condition: the RFC 6120 SASL failure condition to answer with:
        C{malformed-request} for a message that breaks the RFC 5802
        grammar, C{not-authorized} for a wrong nonce or binding.
    """

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


def _malformed(text: str) -> ScramError:
    return ScramError("malformed-request", text)


def escape_saslname(name: str) -> str:
    """
    A name as RFC 5802 C{saslname}: C{=} as C{=3D}, C{,} as C{=2C}.
    """
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_saslname(text: str) -> str:
    """
    The name a C{saslname} encodes.

    @raise ScramError: an empty name, a NUL, or an C{=} not starting one of
        the two escapes.
    """
    if not text:
        raise _malformed("empty name")
    if "\x00" in text:
        raise _malformed("NUL in a name")
    parts = text.split("=")
    result = [parts[0]]
    for part in parts[1:]:
        if part.startswith("2C"):
            result.append("," + part[2:])
        elif part.startswith("3D"):
            result.append("=" + part[2:])
        else:
            raise _malformed("'=' in a name not followed by 2C or 3D")
    return "".join(result)


def _b64decode(text: str, what: str) -> bytes:
    if not _BASE64.match(text) or len(text) % 4:
        raise _malformed(f"{what} is not base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _malformed(f"{what} is not base64") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("not UTF-8") from None


def _check_extensions(fields: list[str]) -> None:
    for field in fields:
        name, equals, _ = field.partition("=")
        if not equals or not _ATTRIBUTE.match(name):
            raise _malformed(f"{field[:20]!r} is not an attribute")


@attrs.frozen
class ClientFirst:
    """
    A parsed client-first-message.

    @ivar flag: the gs2 channel binding flag, C{n} or C{y}.
    @ivar gs2_header: the header as sent (C{"n,,"}, C{"y,a=bob,"}), which
        the client-final-message repeats in C{c=}.
    @ivar authzid: the authorization identity, or L{None}.
    @ivar username: the authentication identity, unescaped.
    @ivar nonce: the client nonce.
    @ivar bare: the client-first-message-bare, which the AuthMessage uses.
    """

    flag: str
    gs2_header: str
    authzid: str | None
    username: str
    nonce: str
    bare: str


def parse_client_first(data: bytes) -> ClientFirst:
    """
    Parse a client-first-message.

    @raise ScramError: anything RFC 5802 section 7 does not allow, a
        mandatory extension (C{m=}), or a channel binding request (C{p=}),
        which this server does not offer.
    """
    text = _text(data)
    flag, comma, rest = text.partition(",")
    if not comma:
        raise _malformed("no gs2 header")
    if flag.startswith("p="):
        raise ScramError("not-authorized", "channel binding is not offered")
    if flag not in ("n", "y"):
        raise _malformed("the channel binding flag must be n or y")
    authzid_field, comma, bare = rest.partition(",")
    if not comma:
        raise _malformed("no gs2 header")
    authzid = None
    if authzid_field:
        if not authzid_field.startswith("a="):
            raise _malformed("the authorization identity must start with a=")
        authzid = unescape_saslname(authzid_field[2:])
    fields = bare.split(",")
    if fields[0].startswith("m="):
        raise _malformed("mandatory extensions are not supported")
    if len(fields) < 2 or not fields[0].startswith("n=") or not fields[1].startswith("r="):
        raise _malformed("the message must start with n=username,r=nonce")
    username = unescape_saslname(fields[0][2:])
    nonce = fields[1][2:]
    if not _PRINTABLE.match(nonce):
        raise _malformed("the nonce must be printable characters other than ','")
    _check_extensions(fields[2:])
    return ClientFirst(flag, f"{flag},{authzid_field},", authzid, username, nonce, bare)


@attrs.frozen
class ClientFinal:
    """
    A parsed client-final-message.

    @ivar channel_binding: the decoded C{c=} value.
    @ivar nonce: the combined nonce.
    @ivar proof: the decoded ClientProof.
    @ivar without_proof: the message up to the proof, which the
        AuthMessage uses.
    """

    channel_binding: bytes
    nonce: str
    proof: bytes
    without_proof: str


def parse_client_final(data: bytes) -> ClientFinal:
    """
    Parse a client-final-message.

    @raise ScramError: anything RFC 5802 section 7 does not allow.
    """
    text = _text(data)
    without_proof, comma, proof_field = text.rpartition(",")
    if not comma or not proof_field.startswith("p="):
        raise _malformed("the message must end with p=proof")
    fields = without_proof.split(",")
    if len(fields) < 2 or not fields[0].startswith("c=") or not fields[1].startswith("r="):
        raise _malformed("the message must start with c=binding,r=nonce")
    binding = _b64decode(fields[0][2:], "the channel binding")
    nonce = fields[1][2:]
    if not _PRINTABLE.match(nonce):
        raise _malformed("the nonce must be printable characters other than ','")
    _check_extensions(fields[2:])
    proof = _b64decode(proof_field[2:], "the proof")
    if not proof:
        raise _malformed("empty proof")
    return ClientFinal(binding, nonce, proof, without_proof)


class ScramState(enum.Enum):
    """
    Where a L{ScramServer} is in the exchange.
    """

    INITIAL = "initial"
    CHALLENGED = "challenged"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def decoy_secrets(hash_name: str, username: str, key: bytes) -> ScramSecrets:
    """
    Keys nobody can log in with, whose salt depends only on C{username}
    and the server's C{key}, so that repeated attempts for a name that has
    no keys look like those for one that has.
    """
    size = hashlib.new(hash_name).digest_size
    salt = hmac.digest(key, f"{hash_name}\x00{username}".encode("utf-8"), "sha256")[:16]
    return ScramSecrets(hash_name, salt, DEFAULT_ITERATIONS, b"\x00" * size, b"\x00" * size)


class ScramServer:
    """
    One SCRAM exchange, server side.

    @param hash_name: C{sha1} or C{sha256}.
    @param lookup: called with the username the client sent; returns the
        L{ScramSecrets} of that hash for it, or L{None} when it has none.
    @param decoy_key: a server secret for L{decoy_secrets}.
    @param random: where nonce bytes come from (a test passes a fixed one).
    """

    def __init__(
        self,
        hash_name: str,
        lookup: Callable[[str], ScramSecrets | None],
        decoy_key: bytes,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if hash_name not in MECHANISMS:
            raise ValueError(f"unknown SCRAM hash {hash_name!r}; known: {sorted(MECHANISMS)}")
        self.hash_name = hash_name
        self.state = ScramState.INITIAL
        self._lookup = lookup
        self._decoy_key = decoy_key
        self._random = random
        self._first: ClientFirst | None = None
        self._secrets: ScramSecrets | None = None
        self._server_first = ""
        self._nonce = ""
        self._auth_message = b""

    @property
    def mechanism(self) -> str:
        return MECHANISMS[self.hash_name]

    @property
    def client_first(self) -> ClientFirst | None:
        """
        The parsed client-first-message, once received.
        """
        return self._first

    def _fail(self, error: ScramError) -> ScramError:
        self.state = ScramState.FAILED
        return error

    def receive_first(self, data: bytes) -> bytes:
        """
        The server-first-message answering client-first-message C{data}.
        """
        if self.state is not ScramState.INITIAL:
            raise self._fail(_malformed("client-first-message out of order"))
        try:
            first = parse_client_first(data)
        except ScramError as e:
            raise self._fail(e) from None
        secrets = self._lookup(first.username)
        if secrets is None or secrets.hash_name != self.hash_name:
            secrets = decoy_secrets(self.hash_name, first.username, self._decoy_key)
        self._first = first
        self._secrets = secrets
        self._nonce = first.nonce + base64.b64encode(self._random(NONCE_BYTES)).decode("ascii")
        salt = base64.b64encode(secrets.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={secrets.iterations}"
        self.state = ScramState.CHALLENGED
        return self._server_first.encode("ascii")

    def receive_final(self, data: bytes) -> ScramCredentials:
        """
        The credentials to check, from client-final-message C{data}.
        """
        if self.state is not ScramState.CHALLENGED:
            raise self._fail(_malformed("client-final-message out of order"))
        try:
            final = parse_client_final(data)
        except ScramError as e:
            raise self._fail(e) from None
        if final.channel_binding != self._first.gs2_header.encode("utf-8"):
            raise self._fail(ScramError("not-authorized", "the channel binding does not repeat the gs2 header"))
        if not hmac.compare_digest(final.nonce.encode("utf-8"), self._nonce.encode("ascii")):
            raise self._fail(ScramError("not-authorized", "the nonce is not the one agreed"))
        self._auth_message = f"{self._first.bare},{self._server_first},{final.without_proof}".encode("utf-8")
        self.state = ScramState.VERIFYING
        return ScramCredentials(self._first.username, self.hash_name, self._auth_message, final.proof)

    def server_final(self) -> bytes:
        """
        The server-final-message, once the portal has accepted the proof.
        """
        if self.state is not ScramState.VERIFYING:
            raise RuntimeError(f"no accepted proof to answer (state {self.state.value})")
        self.state = ScramState.SUCCEEDED
        signature = server_signature(self._secrets, self._auth_message)
        return b"v=" + base64.b64encode(signature)
