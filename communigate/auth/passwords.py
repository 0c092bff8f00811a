"""
Everything an account's password is stored as, derived once when it is set.

The password itself is never kept.  Each protocol needs a different proof
that a client knows it, and most of those proofs cannot be checked against
a single slow hash: a SIP phone answers a digest challenge with a hash of
C{H(username:realm:password)} (RFC 7616 HA1), a SCRAM client with a proof
made from C{Hi(password, salt, i)} (RFC 5802).  So when a password is set
we derive, together, a L{PasswordSecrets} holding:

  - a salted PBKDF2-HMAC-SHA256 hash for protocols that send the password
    itself (CLI, XMPP PLAIN, LDAP simple bind);
  - the SIP digest HA1 values, MD5 and SHA-256, for both username forms a
    phone may be configured with (C{alice} and C{alice@example.com}), with
    the account's domain as realm;
  - SCRAM-SHA-1 and SCRAM-SHA-256 StoredKey/ServerKey pairs (RFC 5802,
    RFC 7677).

Why L{DEFAULT_ITERATIONS} is only 4096: whoever steals the record gets the
HA1 values too, and an HA1 is a single MD5 of the password; the SCRAM keys
next to it are 4096 rounds of PBKDF2, the RFC 7677 minimum that deployed
clients accept.  An offline attack goes for the weakest member, so more
rounds for the plain-password hash would add no strength, only login and
import latency (10,000 accounts are imported in one go).  Protecting the
record as a whole is the store's job.

Password preparation: SCRAM requires SASLprep (RFC 4013).  L{saslprep} is
a complete implementation on top of the standard library's C{stringprep}
tables (Unicode 3.2), with "query" semantics, i.e. unassigned code points
are let through, as most SCRAM clients do.  A password that SASLprep
rejects (control characters, a bidi violation) or maps to nothing is used
as typed: a compliant SCRAM client will then refuse it, but a client that
sends raw UTF-8 still works, and the other protocols are unaffected.  The
plain-password hash uses the same preparation, so C{check_plain} treats
passwords SCRAM treats as equal alike.  The SIP HA1 is taken over the
password's UTF-8 bytes as typed, because that is what phones hash.

All the text forms here (L{PasswordSecrets.to_dict}) contain only strings,
dictionaries and lists, so they can be written in CommuniGate's data format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets as _secrets_module
import stringprep
import unicodedata
from collections.abc import Mapping

import attrs

DEFAULT_ITERATIONS = 4096

SALT_LENGTH = 16

PLAIN_SCHEME = "pbkdf2-sha256"

#: RFC 7616 algorithm names of the HA1 values stored, with their hash.
DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

#: SCRAM mechanisms stored, by hashlib name.
SCRAM_HASHES = ("sha1", "sha256")

# Password characters for generated passwords: no 0/O/o, 1/l/I/i, so a
# password read aloud or off a screen is not mistyped.
_UNAMBIGUOUS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"

_POSITIVE_DECIMAL = re.compile(r"[1-9][0-9]*\Z")
_HEX = re.compile(r"[0-9a-f]*\Z")


class _FrozenMapping(Mapping):
    """
    A read-only, hashable mapping, so the frozen records built from it are
    really immutable and can be compared and hashed.
    """

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        return hash(frozenset(self._items.items()))

    def __repr__(self):
        return f"{type(self).__name__}({self._items!r})"


def _frozen_mapping(value):
    if isinstance(value, _FrozenMapping):
        return value
    return _FrozenMapping(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError(f"{what} is not valid base64") from None


def _positive_int(text: str, what: str) -> int:
    if not isinstance(text, str) or not _POSITIVE_DECIMAL.match(text):
        raise ValueError(f"{what} is not a positive decimal number: {text!r}")
    return int(text)


def _require_str(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _require_dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a dictionary")
    return value


def saslprep(text: str) -> str:
    """
    Prepare C{text} with the SASLprep profile of stringprep (RFC 4013), as
    a stored password must be for SCRAM.

    @raise ValueError: if the result is empty, contains a character the
        profile prohibits, or breaks the bidirectional text rules.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared:
        raise ValueError("SASLprep leaves nothing of the string")
    for char in prepared:
        if (
            stringprep.in_table_c12(char)
            or stringprep.in_table_c21_c22(char)
            or stringprep.in_table_c3(char)
            or stringprep.in_table_c4(char)
            or stringprep.in_table_c5(char)
            or stringprep.in_table_c6(char)
            or stringprep.in_table_c7(char)
            or stringprep.in_table_c8(char)
            or stringprep.in_table_c9(char)
        ):
            raise ValueError(f"SASLprep prohibits U+{ord(char):04X}")
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            raise ValueError("SASLprep forbids mixing right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("right-to-left text must start and end with a right-to-left character")
    return prepared


def _prepared_password(password: str) -> bytes:
    """
    The bytes the plain hash and SCRAM keys are derived from; see the module
    docstring for why a password SASLprep rejects is used as typed.
    """
    try:
        return saslprep(password).encode("utf-8")
    except ValueError:
        return password.encode("utf-8")


def digest_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """
    The RFC 7616 HA1, C{H(username:realm:password)} in lower-case hex, for a
    base algorithm (C{MD5} or C{SHA-256}; a C{-sess} suffix is not applied
    here, see L{communigate.auth.credentials.digest_response}).
    """
    hash_factory = DIGEST_HASHES[algorithm.upper()]
    return hash_factory(f"{username}:{realm}:{password}".encode("utf-8")).hexdigest()


def _check_scram_hash_name(instance, attribute, value):
    if value not in SCRAM_HASHES:
        raise ValueError(f"unknown SCRAM hash {value!r}, expected one of {SCRAM_HASHES}")


def _check_positive(instance, attribute, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, not {value!r}")


def _check_key_length(instance, attribute, value):
    expected = hashlib.new(instance.hash_name).digest_size
    if not isinstance(value, bytes) or len(value) != expected:
        raise ValueError(f"SCRAM-{instance.hash_name} {attribute.name} must be {expected} bytes")


def _check_salt(instance, attribute, value):
    if not isinstance(value, bytes) or not value:
        raise ValueError("a salt must be non-empty bytes")


@attrs.frozen
class ScramSecrets:
    """
    What a SCRAM server keeps for one hash (RFC 5802 section 3): enough to
    verify a client proof and prove itself, but not to impersonate the
    client elsewhere.
    """

    hash_name: str = attrs.field(validator=_check_scram_hash_name)
    salt: bytes = attrs.field(validator=_check_salt)
    iterations: int = attrs.field(validator=_check_positive)
    stored_key: bytes = attrs.field(validator=_check_key_length)
    server_key: bytes = attrs.field(validator=_check_key_length)

    def to_dict(self) -> dict:
        return {
            "Salt": _b64(self.salt),
            "Iterations": str(self.iterations),
            "StoredKey": _b64(self.stored_key),
            "ServerKey": _b64(self.server_key),
        }

    @classmethod
    def from_dict(cls, hash_name: str, data) -> ScramSecrets:
        _check_scram_hash_name(None, None, hash_name)
        what = f"SCRAM-{hash_name}"
        data = _require_dict(data, what)
        for key in ("Salt", "Iterations", "StoredKey", "ServerKey"):
            if key not in data:
                raise ValueError(f"{what} has no {key}")
        return cls(
            hash_name=hash_name,
            salt=_unb64(data["Salt"], f"{what} Salt"),
            iterations=_positive_int(data["Iterations"], f"{what} Iterations"),
            stored_key=_unb64(data["StoredKey"], f"{what} StoredKey"),
            server_key=_unb64(data["ServerKey"], f"{what} ServerKey"),
        )


def derive_scram_secrets(hash_name: str, password: str, salt: bytes, iterations: int) -> ScramSecrets:
    """
    The L{ScramSecrets} of C{password} for a given salt and iteration count,
    per RFC 5802 section 3, with the password prepared as the module
    docstring says.
    """
    salted = hashlib.pbkdf2_hmac(hash_name, _prepared_password(password), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return ScramSecrets(
        hash_name=hash_name,
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", hash_name),
    )


def _plain_hash(password: str, salt: bytes, iterations: int) -> str:
    derived = hashlib.pbkdf2_hmac("sha256", _prepared_password(password), salt, iterations)
    return f"{PLAIN_SCHEME}${iterations}${_b64(salt)}${_b64(derived)}"


def _parse_plain_hash(text) -> tuple[int, bytes, bytes]:
    """
    The iteration count, salt and hash of a plain-password hash text.
    """
    text = _require_str(text, "the plain-password hash")
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != PLAIN_SCHEME:
        raise ValueError(f"the plain-password hash is not in the form {PLAIN_SCHEME}$<iterations>$<salt>$<hash>")
    iterations = _positive_int(parts[1], "the plain-password hash iteration count")
    salt = _unb64(parts[2], "the plain-password salt")
    derived = _unb64(parts[3], "the plain-password hash")
    if not salt:
        raise ValueError("the plain-password salt is empty")
    if len(derived) != hashlib.sha256().digest_size:
        raise ValueError("the plain-password hash has the wrong length")
    return iterations, salt, derived


def _check_plain_hash(instance, attribute, value):
    _parse_plain_hash(value)


def _check_ha1(instance, attribute, value):
    for key, hex_value in value.items():
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(part, str) for part in key)):
            raise ValueError(f"an HA1 key must be (algorithm, username), not {key!r}")
        algorithm = key[0]
        if algorithm not in DIGEST_HASHES:
            raise ValueError(f"unknown digest algorithm {algorithm!r}, expected one of {tuple(DIGEST_HASHES)}")
        length = DIGEST_HASHES[algorithm]().digest_size * 2
        if not (isinstance(hex_value, str) and len(hex_value) == length and _HEX.match(hex_value)):
            raise ValueError(f"the {algorithm} HA1 of {key[1]!r} is not {length} lower-case hex digits")


def _check_scram_map(instance, attribute, value):
    for hash_name, scram in value.items():
        if not isinstance(scram, ScramSecrets) or scram.hash_name != hash_name:
            raise ValueError(f"the SCRAM entry {hash_name!r} does not hold SCRAM-{hash_name} secrets")


def _check_name_part(instance, attribute, value):
    if not isinstance(value, str) or not value or "@" in value:
        raise ValueError(f"{attribute.name} must be a non-empty string without '@', not {value!r}")


@attrs.frozen
class PasswordSecrets:
    """
    The stored form of one account's password.

    @ivar plain_hash: C{pbkdf2-sha256$<iterations>$<b64 salt>$<b64 hash>}.
    @ivar digest_username: the local part the HA1 values were derived for.
    @ivar digest_realm: the realm (the account's domain) they were derived for.
    @ivar ha1: a read-only mapping of C{(algorithm, username)} to the hex HA1,
        for algorithms C{MD5} and C{SHA-256} and usernames C{local} and
        C{local@domain}.
    @ivar scram: a read-only mapping of hash name (C{sha1}, C{sha256}) to
        L{ScramSecrets}.
    """

    plain_hash: str = attrs.field(validator=_check_plain_hash)
    digest_username: str = attrs.field(validator=_check_name_part)
    digest_realm: str = attrs.field(validator=_check_name_part)
    ha1: Mapping = attrs.field(converter=_frozen_mapping, validator=_check_ha1)
    scram: Mapping = attrs.field(converter=_frozen_mapping, validator=_check_scram_map)

    @property
    def plain_iterations(self) -> int:
        return _parse_plain_hash(self.plain_hash)[0]

    def ha1_for(self, username: str, realm: str, algorithm: str) -> str | None:
        """
        The stored HA1 a digest response from C{username} in C{realm} must
        have been computed from, or L{None} if we hold none for them.

        The lookup is lenient about the case of the realm and of the domain
        part, as those are names; the response check then decides.  A
        C{-sess} algorithm gets its base HA1, from which the credentials
        compute the session key.
        """
        base = algorithm.upper().removesuffix("-SESS")
        if base not in DIGEST_HASHES or realm.lower() != self.digest_realm.lower():
            return None
        local, at, domain = username.rpartition("@")
        if not at and username == self.digest_username:
            key_name = username
        elif at and local == self.digest_username and domain.lower() == self.digest_realm.lower():
            key_name = f"{self.digest_username}@{self.digest_realm}"
        else:
            return None
        return self.ha1.get((base, key_name))

    def digest_is_current(self, account_name: str) -> bool:
        """
        Whether the HA1 values were derived for C{account_name}: after a
        rename they are hashes of the old name and no phone using the new
        one can match them.
        """
        return account_name.lower() == f"{self.digest_username}@{self.digest_realm}".lower()

    def needs_refresh(self, account_name: str) -> bool:
        """
        Whether the next verified password should be derived again: the
        digest is stale, something is missing, or a count is below today's.
        """
        if not self.digest_is_current(account_name):
            return True
        if self.plain_iterations < DEFAULT_ITERATIONS:
            return True
        for algorithm in DIGEST_HASHES:
            for username in (self.digest_username, f"{self.digest_username}@{self.digest_realm}"):
                if (algorithm, username) not in self.ha1:
                    return True
        for hash_name in SCRAM_HASHES:
            scram = self.scram.get(hash_name)
            if scram is None or scram.iterations < DEFAULT_ITERATIONS:
                return True
        return False

    def to_dict(self) -> dict:
        """
        This record as strings, dictionaries and lists only, for the
        CommuniGate data format.
        """
        ha1: dict = {}
        for (algorithm, username), hex_value in sorted(self.ha1.items()):
            ha1.setdefault(algorithm, {})[username] = hex_value
        return {
            "PlainHash": self.plain_hash,
            "DigestUser": self.digest_username,
            "DigestRealm": self.digest_realm,
            "HA1": ha1,
            "SCRAM": {name: scram.to_dict() for name, scram in sorted(self.scram.items())},
        }

    @classmethod
    def from_dict(cls, data) -> PasswordSecrets:
        """
        The record L{to_dict} produced.

        @raise ValueError: naming what is wrong, if the record is damaged.
        """
        try:
            data = _require_dict(data, "the record")
            for key in ("PlainHash", "DigestUser", "DigestRealm", "HA1", "SCRAM"):
                if key not in data:
                    raise ValueError(f"it has no {key}")
            ha1 = {}
            for algorithm, by_user in _require_dict(data["HA1"], "HA1").items():
                for username, hex_value in _require_dict(by_user, f"HA1 {algorithm}").items():
                    ha1[(algorithm, username)] = _require_str(hex_value, f"the {algorithm} HA1 of {username!r}")
            scram = {
                hash_name: ScramSecrets.from_dict(hash_name, entry)
                for hash_name, entry in _require_dict(data["SCRAM"], "SCRAM").items()
            }
            return cls(
                plain_hash=data["PlainHash"],
                digest_username=data["DigestUser"],
                digest_realm=data["DigestRealm"],
                ha1=ha1,
                scram=scram,
            )
        except ValueError as error:
            raise ValueError(f"damaged password record: {error}") from None


def _split_account(account_name: str) -> tuple[str, str]:
    local, at, domain = account_name.lower().rpartition("@")
    if not (at and local and domain) or "@" in local:
        raise ValueError(f"an account name must be user@domain, not {account_name!r}")
    return local, domain


def derive_secrets(
    account_name: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    random_bytes=os.urandom,
) -> PasswordSecrets:
    """
    Everything every protocol needs to check C{password} for the account
    C{account_name} (C{user@domain}; the domain is the digest realm).

    C{random_bytes(n)} is asked for the salts in this order: plain hash,
    SCRAM-SHA-1, SCRAM-SHA-256.

    @raise ValueError: if the password is empty or the name has no domain.
    """
    if not password:
        raise ValueError("a password must not be empty")
    local, domain = _split_account(account_name)
    plain_hash = _plain_hash(password, random_bytes(SALT_LENGTH), iterations)
    scram = {
        hash_name: derive_scram_secrets(hash_name, password, random_bytes(SALT_LENGTH), iterations)
        for hash_name in SCRAM_HASHES
    }
    ha1 = {
        (algorithm, username): digest_ha1(algorithm, username, domain, password)
        for algorithm in DIGEST_HASHES
        for username in (local, f"{local}@{domain}")
    }
    return PasswordSecrets(
        plain_hash=plain_hash,
        digest_username=local,
        digest_realm=domain,
        ha1=ha1,
        scram=scram,
    )


def check_plain(secrets: PasswordSecrets, password: str) -> bool:
    """
    Whether C{password} is the one C{secrets} were derived from, compared in
    constant time.
    """
    iterations, salt, expected = _parse_plain_hash(secrets.plain_hash)
    derived = hashlib.pbkdf2_hmac("sha256", _prepared_password(password), salt, iterations)
    return hmac.compare_digest(derived, expected)


def generate_password(length: int = 16) -> str:
    """
    A random password for an account nobody has chosen one for yet (the
    first postmaster), of characters that cannot be confused when read.
    """
    if length < 1:
        raise ValueError(f"a password length must be positive, not {length}")
    return "".join(_secrets_module.choice(_UNAMBIGUOUS) for _ in range(length))
