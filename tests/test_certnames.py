"""
Whether a certificate names a domain (RFC 6125 6, RFC 6120 13.7.1.4):
DNS-IDs with a wildcard only as the whole left-most label, XmppAddr and
SRV-ID otherNames, the CN only without identifiers in subjectAltName,
IDNs in their ASCII form.
"""

import string

from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from communigate.certnames import (
    CertificateNames,
    ascii_domain,
    der_encode_string,
    der_string,
    names_domain,
    names_of,
)
from communigate.testing_pki import TestAuthority

LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=20)
DOMAINS = st.lists(LABEL, min_size=2, max_size=5).map(".".join)


def pem_names(pem):
    certificate = x509.load_pem_x509_certificates(pem)[-1]
    return names_of(certificate)


def test_a_dns_id_names_its_domain_in_any_case_and_with_a_trailing_dot():
    names = CertificateNames(dns_ids=("Example.COM",))
    assert names_domain(names, "example.com")
    assert names_domain(names, "EXAMPLE.com.")
    assert not names_domain(names, "www.example.com")
    assert not names_domain(names, "example.org")


def test_a_wildcard_stands_for_exactly_one_left_most_label():
    names = CertificateNames(dns_ids=("*.example.com",))
    assert names_domain(names, "chat.example.com")
    assert not names_domain(names, "example.com")
    assert not names_domain(names, "a.chat.example.com")


def test_wildcards_elsewhere_or_in_part_of_a_label_or_over_one_label_name_nothing():
    for presented in ("chat.*.com", "c*.example.com", "*chat.example.com", "*.com", "*", "*.*.example.com"):
        names = CertificateNames(dns_ids=(presented,))
        for domain in ("chat.example.com", "chat.a.com", "example.com", "x.com", "a.b.example.com"):
            assert not names_domain(names, domain), (presented, domain)


def test_an_xmppaddr_names_its_domain_but_a_user_jid_names_no_server():
    assert names_domain(CertificateNames(xmpp_addrs=("example.com",)), "example.com")
    assert not names_domain(CertificateNames(xmpp_addrs=("alice@example.com",)), "example.com")
    assert not names_domain(CertificateNames(xmpp_addrs=("example.com/x",)), "example.com")


def test_an_srv_id_names_its_domain_for_its_service_only():
    names = CertificateNames(srv_ids=(("xmpp-server", "example.com"),))
    assert names_domain(names, "example.com")
    assert not names_domain(names, "example.com", service="xmpp-client")


def test_the_cn_counts_only_when_the_certificate_has_no_subject_alt_ids():
    assert names_domain(CertificateNames(common_names=("example.com",)), "example.com")
    with_san = CertificateNames(dns_ids=("other.example",), common_names=("example.com",))
    assert not names_domain(with_san, "example.com")
    with_uri = CertificateNames(uri_ids=("sip:example.com",), common_names=("example.com",))
    assert not names_domain(with_uri, "example.com")
    assert not names_domain(CertificateNames(common_names=("*.example.com",)), "a.example.com")


def test_idns_are_compared_in_their_ascii_form():
    assert ascii_domain("bücher.example") == "xn--bcher-kva.example"
    assert names_domain(CertificateNames(dns_ids=("xn--bcher-kva.example",)), "Bücher.example")
    assert names_domain(CertificateNames(dns_ids=("*.xn--bcher-kva.example",)), "chat.bücher.example")
    assert names_domain(CertificateNames(xmpp_addrs=("bücher.example",)), "xn--bcher-kva.example")
    # A dNSName must be ASCII: a U-label there names nothing.
    assert not names_domain(CertificateNames(dns_ids=("bücher.example",)), "bücher.example")


def test_what_is_no_domain_is_never_named():
    names = CertificateNames(dns_ids=("example.com",), common_names=("example.com",))
    for domain in ("", ".", "a..example.com", "ex ample.com", "a" * 64 + ".com", "exa*mple.com"):
        assert not names_domain(names, domain)


def test_the_identifiers_of_an_issued_certificate_are_read_from_it():
    pem = TestAuthority().issue(
        ["one.test", "*.one.test"], xmpp_addrs=["xmpp.one.test"], srv_names=[("xmpp-server", "srv.one.test")]
    )
    names = pem_names(pem)
    assert names.dns_ids == ("one.test", "*.one.test")
    assert names.xmpp_addrs == ("xmpp.one.test",)
    assert names.srv_ids == (("xmpp-server", "srv.one.test"),)
    assert names.common_names == ("one.test",)
    for domain in ("one.test", "chat.one.test", "xmpp.one.test", "srv.one.test"):
        assert names_domain(names, domain)
    assert not names_domain(names, "two.test")


def test_a_certificate_with_only_a_cn_is_named_by_it():
    names = pem_names(TestAuthority().issue(common_name="cn-only.test"))
    assert names.dns_ids == () and names_domain(names, "cn-only.test")


def test_der_strings_that_do_not_decode_are_refused():
    assert der_string(b"", 0x0C) is None
    assert der_string(b"\x0c\x05abc", 0x0C) is None  # too short
    assert der_string(b"\x16\x03abc", 0x0C) is None  # another type
    assert der_string(b"\x0c\x02\xff\xfe", 0x0C) is None  # not UTF-8
    assert der_string(b"\x0c\x80", 0x0C) is None


@given(st.text(min_size=0, max_size=400))
def test_der_strings_round_trip(text):
    assert der_string(der_encode_string(text), 0x0C) == text


# -- properties ------------------------------------------------------------------


@given(DOMAINS, st.booleans(), st.booleans())
def test_a_domain_is_named_by_itself_whatever_the_case_and_final_dot(domain, upper, dot):
    presented = domain.upper() if upper else domain
    asked = domain + ("." if dot else "")
    assert names_domain(CertificateNames(dns_ids=(presented,)), asked)
    assert names_domain(CertificateNames(xmpp_addrs=(presented,)), asked)
    assert names_domain(CertificateNames(common_names=(presented,)), asked)


@given(LABEL, DOMAINS)
def test_a_wildcard_names_one_more_label_and_nothing_else(label, parent):
    names = CertificateNames(dns_ids=("*." + parent,))
    assert names_domain(names, f"{label}.{parent}")
    assert not names_domain(names, parent)
    assert not names_domain(names, f"{label}.{label}.{parent}")


@given(LABEL, DOMAINS, DOMAINS)
def test_a_wildcard_not_in_the_left_most_label_never_matches(label, left, right):
    names = CertificateNames(dns_ids=(f"{left}.*.{right}",))
    assert not names_domain(names, f"{left}.{label}.{right}")


@given(DOMAINS, DOMAINS)
def test_the_cn_is_ignored_when_any_subject_alt_id_is_present(domain, other):
    names = CertificateNames(dns_ids=(other,), common_names=(domain,))
    assert names_domain(names, domain) == (domain == other)


@given(DOMAINS, DOMAINS)
def test_different_domains_are_never_named(presented, asked):
    names = CertificateNames(dns_ids=(presented,), xmpp_addrs=(presented,), srv_ids=(("xmpp-server", presented),))
    assert names_domain(names, asked) == (presented == asked)
