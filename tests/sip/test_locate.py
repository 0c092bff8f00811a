"""
RFC 3263 server location over a fake DNS client: a dict of
(name, type) -> records, answering at once and recording the questions.
"""

import random
from collections import Counter

import attrs
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import fail, succeed

from communigate.dnsclient import Answer, DNSError, DNSTimeout, RecordSet
from communigate.sip.locate import Locator, order_srv

NXDOMAIN = object()
TIMEOUT = object()
SERVFAIL = object()


class FakeDNSClient:
    """
    Answers from C{zone}: (name, type) -> list of rdata texts, or NXDOMAIN,
    TIMEOUT or SERVFAIL.  A missing entry is an empty answer (no data).
    C{glue}: (name, type) -> (name, type, text) records for the additional
    section of that answer.
    """

    def __init__(self, zone, glue=None):
        self.zone = zone
        self.glue = glue or {}
        self.asked = []

    def query(self, name, rdtype):
        rdtype = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
        self.asked.append((name, rdtype))
        entry = self.zone.get((name, rdtype), [])
        if entry is TIMEOUT:
            return fail(DNSTimeout("no answer"))
        if entry is SERVFAIL:
            return fail(DNSError("server answered SERVFAIL"))
        if entry is NXDOMAIN:
            return succeed(Answer(name, rdtype, dns.rcode.NXDOMAIN, (), 60))
        additional = tuple(
            RecordSet(owner, dns.rdatatype.from_text(kind), 300,
                      (dns.rdata.from_text("IN", kind, text),))
            for owner, kind, text in self.glue.get((name, rdtype), ())
        )
        records = tuple(dns.rdata.from_text("IN", rdtype, text) for text in entry)
        return succeed(Answer(name, dns.rdatatype.from_text(rdtype), dns.rcode.NOERROR,
                              records, 300, additional))


def locate(zone, host, glue=None, locator_args=None, **kwargs):
    """Locate C{host} over C{zone}: (targets as tuples, questions asked)."""
    client = FakeDNSClient(zone, glue)
    got = []
    Locator(client, random=random.Random(1), **(locator_args or {})).locate(
        host, **kwargs
    ).addBoth(got.append)
    [targets] = got
    return [attrs.astuple(t) for t in targets], client.asked


def naptr(order, preference, service, replacement, flags="s"):
    return f'{order} {preference} "{flags}" "{service}" "" {replacement}.'


HOSTS = {
    ("a.example.com", "A"): ["192.0.2.1"],
    ("a.example.com", "AAAA"): ["2001:db8::1"],
    ("b.example.com", "A"): ["192.0.2.2"],
    ("c.example.com", "A"): ["192.0.2.3"],
}


# --- IP literals -------------------------------------------------------


@pytest.mark.parametrize(
    "host, kwargs, expected",
    [
        ("192.0.2.9", {}, ("udp", "192.0.2.9", 5060)),
        ("192.0.2.9", {"scheme": "sips"}, ("tls", "192.0.2.9", 5061)),
        ("192.0.2.9", {"port": 5080}, ("udp", "192.0.2.9", 5080)),
        ("192.0.2.9", {"transport": "TCP"}, ("tcp", "192.0.2.9", 5060)),
        ("192.0.2.9", {"transport": "tls"}, ("tls", "192.0.2.9", 5061)),
        ("192.0.2.9", {"scheme": "sips", "transport": "tcp"}, ("tls", "192.0.2.9", 5061)),
        ("[2001:DB8::9]", {"host_is_ip": True}, ("udp", "2001:db8::9", 5060)),
        ("2001:db8::9", {"port": 5070}, ("udp", "2001:db8::9", 5070)),
    ],
)
def test_an_ip_literal_is_used_as_it_is_without_dns(host, kwargs, expected):
    assert locate({}, host, **kwargs) == ([expected], [])


def test_maddr_replaces_the_host_as_the_target():
    assert locate({}, "example.com", maddr="192.0.2.7", port=5062) == (
        [("udp", "192.0.2.7", 5062)], []
    )
    targets, asked = locate(HOSTS, "example.com", maddr="b.example.com", port=5062)
    assert targets == [("udp", "192.0.2.2", 5062)]
    assert asked == [("b.example.com", "A"), ("b.example.com", "AAAA")]


def test_an_ip_literal_that_cannot_be_read_gives_no_targets_without_dns():
    assert locate({}, "[2001:db8::zz]", host_is_ip=True) == ([], [])


def test_a_host_the_parser_calls_a_name_is_located_as_one():
    zone = {("example.com", "A"): ["192.0.2.5"]}
    targets, asked = locate(zone, "example.com", host_is_ip=False)
    assert targets == [("udp", "192.0.2.5", 5060)]
    assert asked[0] == ("example.com", "NAPTR")


# --- explicit port: A/AAAA only -------------------------------------------


def test_a_name_with_a_port_asks_only_for_addresses_ipv4_first():
    zone = {**HOSTS, ("a.example.com", "NAPTR"): [naptr(1, 1, "SIP+D2T", "_sip._tcp.x")]}
    targets, asked = locate(zone, "A.Example.COM.", port=5070)
    assert targets == [("udp", "192.0.2.1", 5070), ("udp", "2001:db8::1", 5070)]
    assert asked == [("a.example.com", "A"), ("a.example.com", "AAAA")]


def test_a_sips_name_with_a_port_is_tls_and_a_transport_param_is_kept():
    assert locate(HOSTS, "b.example.com", scheme="sips", port=5071)[0] == [
        ("tls", "192.0.2.2", 5071)
    ]
    assert locate(HOSTS, "b.example.com", transport="tcp", port=5071)[0] == [
        ("tcp", "192.0.2.2", 5071)
    ]


def test_without_ipv6_aaaa_is_never_asked():
    targets, asked = locate(HOSTS, "a.example.com", port=5060, locator_args={"ipv6": False})
    assert targets == [("udp", "192.0.2.1", 5060)]
    assert asked == [("a.example.com", "A")]


# --- transport parameter: SRV of that transport ---------------------------


def test_a_transport_param_asks_that_transports_srv_only():
    zone = {
        **HOSTS,
        ("_sip._tcp.example.com", "SRV"): ["20 0 5090 b.example.com.", "10 0 5080 a.example.com."],
    }
    targets, asked = locate(zone, "example.com", transport="tcp")
    assert targets == [
        ("tcp", "192.0.2.1", 5080), ("tcp", "2001:db8::1", 5080), ("tcp", "192.0.2.2", 5090)
    ]
    assert asked[0] == ("_sip._tcp.example.com", "SRV")
    assert not [q for q in asked if q[1] == "NAPTR"]


def test_sips_over_tcp_asks_the_sips_srv():
    zone = {**HOSTS, ("_sips._tcp.example.com", "SRV"): ["10 0 5061 b.example.com."]}
    assert locate(zone, "example.com", scheme="sips", transport="tcp")[0] == [
        ("tls", "192.0.2.2", 5061)
    ]


def test_a_transport_param_without_srv_falls_back_to_addresses_and_default_port():
    zone = {("example.com", "A"): ["192.0.2.5"]}
    assert locate(zone, "example.com", transport="tls")[0] == [("tls", "192.0.2.5", 5061)]
    assert locate(zone, "example.com", transport="tcp")[0] == [("tcp", "192.0.2.5", 5060)]


@pytest.mark.parametrize(
    "kwargs",
    [{"scheme": "sips", "transport": "udp"}, {"transport": "sctp"}, {"transport": "ws"}],
)
def test_a_transport_we_cannot_use_gives_no_targets_and_asks_nothing(kwargs):
    assert locate(HOSTS, "a.example.com", **kwargs) == ([], [])
    assert locate({}, "192.0.2.1", **kwargs) == ([], [])


def test_a_transport_left_out_of_the_locators_transports_is_not_used():
    args = {"transports": ("udp", "tcp")}
    assert locate(HOSTS, "a.example.com", transport="tls", locator_args=args) == ([], [])
    assert locate({}, "192.0.2.1", scheme="sips", locator_args=args) == ([], [])


# --- NAPTR -----------------------------------------------------------------


EXAMPLE = {
    **HOSTS,
    ("example.com", "NAPTR"): [
        naptr(50, 30, "SIPS+D2T", "_sips._tcp.example.com"),
        naptr(50, 10, "SIP+D2T", "_sip._tcp.example.com"),
        naptr(50, 20, "SIP+D2U", "_sip._udp.example.com"),
    ],
    ("_sip._tcp.example.com", "SRV"): ["10 0 5060 a.example.com."],
    ("_sip._udp.example.com", "SRV"): ["10 0 5060 b.example.com."],
    ("_sips._tcp.example.com", "SRV"): ["10 0 5061 c.example.com."],
}


def test_naptr_records_by_preference_lead_to_srv_then_addresses():
    targets, asked = locate(EXAMPLE, "example.com")
    assert targets == [
        ("tcp", "192.0.2.1", 5060), ("tcp", "2001:db8::1", 5060),
        ("udp", "192.0.2.2", 5060), ("tls", "192.0.2.3", 5061),
    ]
    assert asked[0] == ("example.com", "NAPTR")
    assert not [q for q in asked if q[0] == "example.com" and q[1] != "NAPTR"]


def test_a_sips_uri_uses_only_sips_naptr_records():
    assert locate(EXAMPLE, "example.com", scheme="sips")[0] == [("tls", "192.0.2.3", 5061)]


def test_naptr_records_for_transports_we_do_not_support_are_passed_over():
    targets, _ = locate(EXAMPLE, "example.com", locator_args={"transports": ("udp",)})
    assert targets == [("udp", "192.0.2.2", 5060)]


@pytest.mark.parametrize(
    "record",
    [
        naptr(1, 1, "SIP+D2S", "_sip._sctp.example.com"),
        naptr(1, 1, "SIP+D2T", "_sip._tcp.example.com", flags="a"),
        naptr(1, 1, "SIP+D2W", "_sip._ws.example.com"),
        naptr(1, 1, "E2U+sip", "_sip._tcp.example.com"),
        '1 1 "s" "SIP+D2T" "" .',
    ],
)
def test_naptr_records_with_other_services_flags_or_no_replacement_are_ignored(record):
    zone = dict(EXAMPLE)
    zone[("example.com", "NAPTR")] = [record, naptr(2, 1, "SIP+D2U", "_sip._udp.example.com")]
    assert locate(zone, "example.com")[0] == [("udp", "192.0.2.2", 5060)]


def test_only_the_lowest_order_that_leads_somewhere_is_used():
    zone = dict(EXAMPLE)
    zone[("example.com", "NAPTR")] = [
        naptr(10, 10, "SIP+D2U", "_sip._udp.example.com"),
        naptr(20, 10, "SIP+D2T", "_sip._tcp.example.com"),
    ]
    assert locate(zone, "example.com")[0] == [("udp", "192.0.2.2", 5060)]
    zone[("_sip._udp.example.com", "SRV")] = NXDOMAIN
    assert locate(zone, "example.com")[0] == [
        ("tcp", "192.0.2.1", 5060), ("tcp", "2001:db8::1", 5060)
    ]


def test_naptr_records_that_lead_nowhere_give_no_targets_without_fallback():
    zone = {
        ("example.com", "NAPTR"): [naptr(10, 10, "SIP+D2U", "_sip._udp.example.com")],
        ("example.com", "A"): ["192.0.2.99"],
    }
    targets, asked = locate(zone, "example.com")
    assert targets == []
    assert ("example.com", "A") not in asked


def test_srv_and_addresses_in_the_naptr_additional_section_are_not_asked_again():
    zone = {("example.com", "NAPTR"): [naptr(10, 10, "SIP+D2U", "_sip._udp.example.com")]}
    glue = {
        ("example.com", "NAPTR"): [
            ("_sip._udp.example.com", "SRV", "10 0 5066 g.example.com."),
            ("g.example.com", "A", "192.0.2.66"),
        ]
    }
    targets, asked = locate(zone, "example.com", glue=glue, locator_args={"ipv6": False})
    assert targets == [("udp", "192.0.2.66", 5066)]
    assert asked == [("example.com", "NAPTR")]


# --- no NAPTR: SRV for each transport, then A/AAAA ---------------------------


def test_without_naptr_the_srv_of_each_supported_transport_is_asked_in_preference_order():
    zone = {k: v for k, v in EXAMPLE.items() if k != ("example.com", "NAPTR")}
    targets, asked = locate(zone, "example.com")
    assert targets == [
        ("udp", "192.0.2.2", 5060), ("tcp", "192.0.2.1", 5060),
        ("tcp", "2001:db8::1", 5060), ("tls", "192.0.2.3", 5061),
    ]
    assert [q for q in asked if q[1] in ("NAPTR", "SRV")] == [
        ("example.com", "NAPTR"), ("_sip._udp.example.com", "SRV"),
        ("_sip._tcp.example.com", "SRV"), ("_sips._tcp.example.com", "SRV"),
    ]
    targets, _ = locate(zone, "example.com", locator_args={"transports": ("tls", "tcp")})
    assert [t[0] for t in targets] == ["tls", "tcp", "tcp"]


def test_without_naptr_a_sips_uri_asks_only_the_sips_srv():
    zone = {k: v for k, v in EXAMPLE.items() if k != ("example.com", "NAPTR")}
    targets, asked = locate(zone, "example.com", scheme="sips")
    assert targets == [("tls", "192.0.2.3", 5061)]
    assert [q for q in asked if q[1] == "SRV"] == [("_sips._tcp.example.com", "SRV")]


def test_naptr_for_unsupported_transports_only_is_like_no_naptr():
    zone = {
        ("example.com", "NAPTR"): [naptr(1, 1, "SIP+D2S", "_sip._sctp.example.com")],
        ("_sip._udp.example.com", "SRV"): ["1 0 5060 b.example.com."],
        **HOSTS,
    }
    assert locate(zone, "example.com")[0] == [("udp", "192.0.2.2", 5060)]


@pytest.mark.parametrize(
    "scheme, expected",
    [("sip", [("udp", "192.0.2.5", 5060), ("udp", "2001:db8::5", 5060)]),
     ("sips", [("tls", "192.0.2.5", 5061), ("tls", "2001:db8::5", 5061)])],
)
def test_without_naptr_or_srv_the_addresses_get_the_default_port_and_transport(scheme, expected):
    zone = {("example.com", "AAAA"): ["2001:db8::5"], ("example.com", "A"): ["192.0.2.5"]}
    targets, asked = locate(zone, "example.com", scheme=scheme)
    assert targets == expected
    assert asked[-2:] == [("example.com", "A"), ("example.com", "AAAA")]


def test_a_failed_srv_question_counts_as_no_srv():
    zone = {
        ("_sip._udp.example.com", "SRV"): SERVFAIL,
        ("_sip._tcp.example.com", "SRV"): TIMEOUT,
        ("example.com", "A"): ["192.0.2.5"],
    }
    assert locate(zone, "example.com", locator_args={"transports": ("udp", "tcp")})[0] == [
        ("udp", "192.0.2.5", 5060)
    ]


def test_a_lone_srv_record_with_target_dot_means_not_here_and_stops_the_search():
    zone = {
        ("_sip._udp.example.com", "SRV"): ["0 0 0 ."],
        ("example.com", "A"): ["192.0.2.5"],
    }
    targets, asked = locate(zone, "example.com", locator_args={"transports": ("udp",)})
    assert targets == []
    assert ("example.com", "A") not in asked


def test_srv_addresses_in_the_additional_section_are_not_asked_again():
    zone = {("_sip._udp.example.com", "SRV"): ["10 0 5060 g.example.com."]}
    glue = {("_sip._udp.example.com", "SRV"): [
        ("G.example.com", "AAAA", "2001:db8::66"), ("g.example.com", "A", "192.0.2.66"),
    ]}
    targets, asked = locate(zone, "example.com", glue=glue, transport="udp")
    assert targets == [("udp", "192.0.2.66", 5060), ("udp", "2001:db8::66", 5060)]
    assert asked == [("_sip._udp.example.com", "SRV")]


def test_an_address_family_the_additional_section_leaves_out_is_asked():
    zone = {
        ("_sip._udp.example.com", "SRV"): ["10 0 5060 g.example.com."],
        ("g.example.com", "AAAA"): ["2001:db8::66"],
    }
    glue = {("_sip._udp.example.com", "SRV"): [("g.example.com", "A", "192.0.2.66")]}
    targets, asked = locate(zone, "example.com", glue=glue, transport="udp")
    assert targets == [("udp", "192.0.2.66", 5060), ("udp", "2001:db8::66", 5060)]
    assert asked == [("_sip._udp.example.com", "SRV"), ("g.example.com", "AAAA")]


def test_glue_from_one_srv_answer_serves_only_its_own_branch():
    zone = {
        ("example.com", "NAPTR"): [
            naptr(1, 1, "SIP+D2U", "_sip._udp.example.com"),
            naptr(1, 2, "SIP+D2T", "_sip._tcp.example.com"),
        ],
        ("_sip._udp.example.com", "SRV"): ["10 0 5060 g.example.com."],
        ("_sip._tcp.example.com", "SRV"): ["10 0 5060 g.example.com."],
        ("g.example.com", "A"): ["192.0.2.77"],
    }
    glue = {("_sip._udp.example.com", "SRV"): [("g.example.com", "A", "192.0.2.66")]}
    targets, _ = locate(zone, "example.com", glue=glue, locator_args={"ipv6": False})
    assert targets == [("udp", "192.0.2.66", 5060), ("tcp", "192.0.2.77", 5060)]


def test_an_srv_target_without_addresses_is_skipped_and_the_others_kept():
    zone = {
        **HOSTS,
        ("_sip._udp.example.com", "SRV"): [
            "10 0 5060 gone.example.com.", "20 0 5060 b.example.com.",
        ],
        ("gone.example.com", "A"): TIMEOUT,
        ("gone.example.com", "AAAA"): NXDOMAIN,
    }
    assert locate(zone, "example.com", transport="udp")[0] == [("udp", "192.0.2.2", 5060)]


def test_repeated_targets_appear_once_and_the_list_is_capped():
    zone = {
        ("_sip._udp.example.com", "SRV"): [
            f"10 {n} 5060 h{n}.example.com." for n in range(10)
        ],
        **{(f"h{n}.example.com", "A"): ["192.0.2.1"] for n in range(10)},
    }
    assert locate(zone, "example.com", transport="udp")[0] == [("udp", "192.0.2.1", 5060)]
    zone = {
        ("_sip._udp.example.com", "SRV"): [f"10 1 {5060 + n} h.example.com." for n in range(10)],
        ("h.example.com", "A"): ["192.0.2.1"],
    }
    targets, _ = locate(zone, "example.com", transport="udp", locator_args={"max_targets": 4})
    assert len(targets) == 4


# --- failures ----------------------------------------------------------------


def test_nxdomain_for_the_domain_ends_the_search_at_once():
    assert locate({("nowhere.example", "NAPTR"): NXDOMAIN}, "nowhere.example") == (
        [], [("nowhere.example", "NAPTR")]
    )


def test_a_naptr_timeout_ends_the_search_at_once():
    assert locate({("example.com", "NAPTR"): TIMEOUT}, "example.com") == (
        [], [("example.com", "NAPTR")]
    )


def test_a_naptr_server_failure_counts_as_no_naptr():
    zone = {("example.com", "NAPTR"): SERVFAIL, ("example.com", "A"): ["192.0.2.5"]}
    assert locate(zone, "example.com")[0] == [("udp", "192.0.2.5", 5060)]


def test_an_empty_host_gives_no_targets():
    assert locate({}, "") == ([], [])


@pytest.mark.parametrize("kwargs", [{"scheme": "tel"}, {"port": 0}, {"port": 70000}])
def test_programming_errors_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        Locator(FakeDNSClient({})).locate("example.com", **kwargs)


@pytest.mark.parametrize("transports", [(), ("udp", "sctp")])
def test_a_bad_transports_setting_is_refused_naming_the_choices(transports):
    with pytest.raises(ValueError, match="udp"):
        Locator(FakeDNSClient({}), transports=transports)


# --- RFC 2782 ordering ---------------------------------------------------------


@attrs.frozen
class Srv:
    priority: int
    weight: int
    target: str


class ScriptedRandom:
    """randint answers from a script, recording the ranges asked."""

    def __init__(self, picks):
        self.picks = list(picks)
        self.ranges = []

    def randint(self, a, b):
        self.ranges.append((a, b))
        return self.picks.pop(0)


def test_a_pick_selects_the_first_record_whose_running_weight_reaches_it():
    records = [Srv(1, 10, "a"), Srv(1, 30, "b"), Srv(1, 0, "z")]
    scripted = ScriptedRandom([11, 0, 10])
    assert [r.target for r in order_srv(records, scripted)] == ["b", "z", "a"]
    assert scripted.ranges == [(0, 40), (0, 10), (1, 10)]


def test_without_zero_weights_the_draw_starts_at_one_so_weights_are_exact():
    records = [Srv(1, 1, "a"), Srv(1, 3, "b")]
    assert order_srv(records, ScriptedRandom([1, 3]))[0].target == "a"
    assert order_srv(records, ScriptedRandom([2, 3]))[0].target == "b"
    scripted = ScriptedRandom([2, 1])
    order_srv(records, scripted)
    assert scripted.ranges == [(1, 4), (1, 1)]


def test_weights_set_the_chance_of_coming_first():
    records = [Srv(1, 1, "light"), Srv(1, 3, "heavy"), Srv(2, 100, "backup")]
    seeded = random.Random(42)
    firsts = Counter(order_srv(records, seeded)[0].target for _ in range(4000))
    assert set(firsts) == {"light", "heavy"}
    assert 0.70 < firsts["heavy"] / 4000 < 0.80


def test_a_seed_gives_the_same_order_whatever_order_the_records_came_in():
    records = [Srv(1, w, t) for w, t in [(5, "a"), (0, "b"), (7, "c"), (5, "d")]]
    first = order_srv(records, random.Random(7))
    assert order_srv(list(reversed(records)), random.Random(7)) == first


srv_records = st.lists(
    st.builds(Srv, st.integers(0, 5), st.integers(0, 65535), st.text(max_size=3)),
    max_size=12,
)


@given(srv_records, st.integers())
def test_srv_ordering_keeps_every_record_once_with_priorities_ascending(records, seed):
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(records)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)
