"""
Whether a certificate names a domain: the identity rules of RFC 6125
section 6, with the XMPP identifiers of RFC 6120 section 13.7.1.4.

Pure: L{names_of} reads the presented identifiers of a C{cryptography}
certificate into L{CertificateNames}; L{names_domain} says whether they
prove a domain.  The rules:

  - B{XmppAddr} (C{id-on-xmppAddr} otherName, UTF-8): the domain itself;
  - B{SRV-ID} (C{id-on-dnsSRV} otherName, C{_service.domain}): the domain,
    for the service asked (C{xmpp-server} by default);
  - B{DNS-ID} (C{dNSName}): the domain, or a wildcard C{*} that is the
    whole left-most label and stands for exactly one label (C{*.example.com}
    names C{chat.example.com}, not C{example.com} nor C{a.b.example.com});
    no wildcard elsewhere, none in part of a label, none over fewer than
    two labels (C{*.com});
  - B{CN-ID}: the subject's common names, compared like a DNS-ID without
    wildcards, I{only} when the certificate carries no DNS-ID, SRV-ID,
    URI-ID or XmppAddr at all.

Names are compared in their ASCII (IDNA, A-label) form, case-insensitively,
without a trailing dot.  Shared by the XMPP server-to-server side; the SIP
side verifies through C{service_identity} (RFC 5922 checks DNS-IDs and
URIs, which it does).
"""

from __future__ import annotations

import attrs
from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

#: RFC 6120 13.7.1.4: the XmppAddr otherName.
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
#: RFC 4985: the SRVName otherName (SRV-ID).
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")

#: What an ASCII domain name is made of (letters, digits, hyphens, dots;
#: underscores for service names).
_DOMAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")

#: DER tags of the strings these otherNames hold.
_UTF8STRING, _IA5STRING = 0x0C, 0x16


@attrs.frozen
class CertificateNames:
    """
    The identifiers a certificate presents.

    @ivar dns_ids: C{dNSName}s, as written (maybe with a wildcard).
    @ivar srv_ids: C{(service, domain)} of each SRVName (service without
        its underscore).
    @ivar xmpp_addrs: XmppAddr values (UTF-8 text).
    @ivar uri_ids: C{uniformResourceIdentifier}s (only their presence
        matters here: they turn the CN fallback off).
    @ivar common_names: the subject's CNs.
    """

    dns_ids: tuple = ()
    srv_ids: tuple = ()
    xmpp_addrs: tuple = ()
    uri_ids: tuple = ()
    common_names: tuple = ()

    @property
    def has_subject_alt_ids(self) -> bool:
        return bool(self.dns_ids or self.srv_ids or self.xmpp_addrs or self.uri_ids)


def ascii_domain(name: str) -> str | None:
    """
    C{name} in lower-case ASCII (IDNA A-labels), without a trailing dot;
    L{None} when it is not a domain name that has one.
    """
    if not isinstance(name, str):
        return None
    name = name.rstrip(".")
    if not name or len(name) > 253:
        return None
    if name.isascii():
        ascii_name = name.lower()
    else:
        try:
            ascii_name = name.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return None
    if not set(ascii_name) <= _DOMAIN_CHARACTERS:
        return None
    labels = ascii_name.split(".")
    if any(not label or len(label) > 63 for label in labels):
        return None
    return ascii_name


def _dns_id_matches(presented: str, domain: str) -> bool:
    """
    DNS-ID C{presented} against C{domain} (already ASCII), RFC 6125 6.4.
    """
    if not isinstance(presented, str) or not presented.isascii():
        return False
    presented = presented.rstrip(".").lower()
    if presented == domain:
        return "*" not in presented
    first, dot, rest = presented.partition(".")
    if first != "*" or not dot or "*" in rest or rest.count(".") < 1:
        return False
    if any(not label for label in rest.split(".")):
        return False
    label, dot, domain_rest = domain.partition(".")
    return bool(dot and label) and domain_rest == rest


def names_domain(names: CertificateNames, domain: str, service: str = "xmpp-server") -> bool:
    """
    Whether C{names} prove C{domain} (RFC 6125 6, RFC 6120 13.7.1.4), for
    the SRV service C{service}.
    """
    wanted = ascii_domain(domain)
    if wanted is None:
        return False
    for addr in names.xmpp_addrs:
        if ascii_domain(addr) == wanted and "@" not in addr and "/" not in addr:
            return True
    for srv_service, srv_domain in names.srv_ids:
        if srv_service.lower() == service and ascii_domain(srv_domain) == wanted:
            return True
    if any(_dns_id_matches(presented, wanted) for presented in names.dns_ids):
        return True
    if names.has_subject_alt_ids:
        return False
    return any("*" not in cn and ascii_domain(cn) == wanted for cn in names.common_names)


def proved_domains(names: CertificateNames) -> list[str]:
    """
    The names C{names} present, for logs and listings (wildcards as written).
    """
    found = list(names.xmpp_addrs) + [domain for _service, domain in names.srv_ids] + list(names.dns_ids)
    if not names.has_subject_alt_ids:
        found += list(names.common_names)
    return sorted(set(found))


def names_of(certificate: x509.Certificate) -> CertificateNames:
    """
    The identifiers C{certificate} presents; otherNames that do not decode
    are left out.
    """
    common_names = tuple(
        attribute.value
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if isinstance(attribute.value, str)
    )
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return CertificateNames(common_names=common_names)
    xmpp_addrs, srv_ids = [], []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            text = der_string(other.value, _UTF8STRING)
            if text is not None:
                xmpp_addrs.append(text)
        elif other.type_id == ID_ON_DNSSRV:
            text = der_string(other.value, _IA5STRING)
            if text is not None and text.startswith("_") and "." in text:
                service, _dot, domain = text[1:].partition(".")
                srv_ids.append((service, domain))
    return CertificateNames(
        dns_ids=tuple(san.get_values_for_type(x509.DNSName)),
        srv_ids=tuple(srv_ids),
        xmpp_addrs=tuple(xmpp_addrs),
        uri_ids=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
        common_names=common_names,
    )


def der_string(data: bytes, tag: int) -> str | None:
    """
    The text of the DER string C{data} of type C{tag} (UTF8String or
    IA5String), or L{None} when it is not one.
    """
    if len(data) < 2 or data[0] != tag:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or len(data) < 2 + count:
            return None
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
    if len(data) != offset + length:
        return None
    try:
        return data[offset:].decode("utf-8" if tag == _UTF8STRING else "ascii")
    except UnicodeDecodeError:
        return None


def der_encode_string(text: str, tag: int = _UTF8STRING) -> bytes:
    """
    C{text} as a DER UTF8String (or IA5String): what an otherName holds.
    """
    data = text.encode("utf-8" if tag == _UTF8STRING else "ascii")
    if len(data) < 0x80:
        return bytes([tag, len(data)]) + data
    size = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + data


def xmpp_addr(domain: str) -> x509.OtherName:
    """
    The XmppAddr otherName for C{domain} (to put in a certificate).
    """
    return x509.OtherName(ID_ON_XMPPADDR, der_encode_string(domain, _UTF8STRING))


def srv_id(service: str, domain: str) -> x509.OtherName:
    """
    The SRVName otherName C{_service.domain}.
    """
    return x509.OtherName(ID_ON_DNSSRV, der_encode_string(f"_{service}.{domain}", _IA5STRING))
