"""
Credentials for the challenge-response logins, as C{twisted.cred} types.

A front end that ran a SIP digest challenge or a SCRAM exchange turns what
the client answered into one of these and hands it to the portal; the
checkers in L{communigate.auth.checkers} then verify it against the stored
L{communigate.auth.passwords.PasswordSecrets}, without ever seeing the
password.  Plain passwords use Twisted's own
L{twisted.cred.credentials.IUsernamePassword}.

Only the arithmetic lives here.  Nonce freshness, nonce-count replay and the
SASL message syntax belong to the protocol modules that issue challenges.
"""

from __future__ import annotations

import hashlib
import hmac

import attrs
from zope.interface import implementer

from communigate.auth.passwords import DIGEST_HASHES, ScramSecrets, digest_ha1
from communigate.interfaces import IScramCredentials, ISIPDigestCredentials

__all__ = [
    "ISIPDigestCredentials",
    "SIPDigestCredentials",
    "IScramCredentials",
    "ScramCredentials",
    "digest_ha1",
    "digest_response",
    "server_signature",
]

DIGEST_ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess")

DIGEST_QOPS = (None, "auth", "auth-int")


def _hex_hash(algorithm: str, data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return DIGEST_HASHES[algorithm](data).hexdigest()


def digest_response(
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """
    The RFC 7616 section 3.4.1 response value, hex, from a base HA1 (as
    L{digest_ha1} computes it).  Without C{qop} this is the RFC 2069 form.

    @raise ValueError: for an unknown algorithm or qop, or when C{nc} and
        C{cnonce} are missing where the algorithm or qop needs them.
    """
    base, sess, rest = algorithm.upper().partition("-SESS")
    if base not in DIGEST_HASHES or rest:
        raise ValueError(f"unknown digest algorithm {algorithm!r}, expected one of {DIGEST_ALGORITHMS}")
    if qop not in DIGEST_QOPS:
        raise ValueError(f"unknown qop {qop!r}, expected one of {DIGEST_QOPS}")
    if (qop is not None or sess) and (cnonce is None or (qop is not None and nc is None)):
        raise ValueError("this algorithm or qop needs nc and cnonce")
    if sess:
        ha1 = _hex_hash(base, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _hex_hash(base, f"{method}:{uri}:{_hex_hash(base, body)}")
    else:
        ha2 = _hex_hash(base, f"{method}:{uri}")
    if qop is None:
        return _hex_hash(base, f"{ha1}:{nonce}:{ha2}")
    return _hex_hash(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


@implementer(ISIPDigestCredentials)
@attrs.frozen
class SIPDigestCredentials:
    username: str
    realm: str
    nonce: str
    method: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    body: bytes = b""

    def check_ha1(self, ha1_hex: str) -> bool:
        try:
            expected = digest_response(
                ha1=ha1_hex,
                nonce=self.nonce,
                method=self.method,
                uri=self.uri,
                algorithm=self.algorithm,
                qop=self.qop,
                nc=self.nc,
                cnonce=self.cnonce,
                body=self.body,
            )
        except ValueError:
            return False
        # Hex digits are case-insensitive on the wire; compare_digest wants
        # bytes for anything that might not be ASCII.
        return hmac.compare_digest(expected.encode("ascii"), self.response.lower().encode("utf-8"))


def _client_signature(scram_secrets: ScramSecrets, auth_message: bytes) -> bytes:
    return hmac.digest(scram_secrets.stored_key, auth_message, scram_secrets.hash_name)


def server_signature(scram_secrets: ScramSecrets, auth_message: bytes) -> bytes:
    """
    The ServerSignature the server sends in its final message (C{v=}), so
    the client knows it talked to someone holding its keys.
    """
    return hmac.digest(scram_secrets.server_key, auth_message, scram_secrets.hash_name)


@implementer(IScramCredentials)
@attrs.frozen
class ScramCredentials:
    username: str
    hash_name: str
    auth_message: bytes
    client_proof: bytes

    def check_scram(self, scram_secrets: ScramSecrets) -> bool:
        if scram_secrets.hash_name != self.hash_name:
            return False
        signature = _client_signature(scram_secrets, self.auth_message)
        if len(self.client_proof) != len(signature):
            return False
        client_key = bytes(a ^ b for a, b in zip(self.client_proof, signature))
        return hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(), scram_secrets.stored_key)
