"""
The SASL EXTERNAL elements between servers (XEP-0178), read and built.
"""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.words.xish import domish

from communigate.xmpp import s2s_sasl

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def auth(text=None, mechanism="EXTERNAL", name="auth"):
    element = domish.Element((NS_SASL, name))
    if mechanism is not None and name == "auth":
        element["mechanism"] = mechanism
    if text is not None:
        element.addContent(text)
    return element


def test_our_auth_carries_our_domain_in_base64_or_an_equals_sign():
    built = s2s_sasl.auth_external("one.test")
    assert built["mechanism"] == "EXTERNAL" and base64.b64decode(str(built)) == b"one.test"
    assert str(s2s_sasl.auth_external("")) == "="
    assert s2s_sasl.read_external(built).authzid == "one.test"


def test_an_equals_sign_means_the_stream_domain_and_no_content_means_a_challenge():
    assert s2s_sasl.read_external(auth("=")).authzid == ""
    assert s2s_sasl.read_external(auth()).authzid is None
    assert s2s_sasl.read_external(auth(name="response")).authzid == ""


@pytest.mark.parametrize(
    "element, condition",
    [
        (auth("a%b"), "incorrect-encoding"),
        (auth("YQ"), "incorrect-encoding"),  # no padding
        (auth(base64.b64encode(b"\xc3(").decode()), "incorrect-encoding"),
        (auth(base64.b64encode(b"a\x00b").decode()), "malformed-request"),
        (auth("=", mechanism="PLAIN"), "invalid-mechanism"),
        (auth("=", mechanism=None), "invalid-mechanism"),
        (auth("=", name="success"), "malformed-request"),
        (auth("A" * 3000), "malformed-request"),
    ],
)
def test_bad_requests_are_the_right_failure(element, condition):
    with pytest.raises(s2s_sasl.SASLFault) as raised:
        s2s_sasl.read_external(element)
    assert raised.value.condition == condition


@given(st.text(max_size=300))
def test_any_content_is_read_or_refused_with_a_sasl_condition(text):
    try:
        request = s2s_sasl.read_external(auth(text))
    except s2s_sasl.SASLFault as fault:
        assert fault.condition in ("incorrect-encoding", "malformed-request")
    else:
        assert request.authzid is None or isinstance(request.authzid, str)


@given(st.text(min_size=1, max_size=200).filter(lambda t: "\x00" not in t))
def test_identities_round_trip(authzid):
    assert s2s_sasl.read_external(s2s_sasl.auth_external(authzid)).authzid == authzid


def test_the_offered_mechanisms_are_read_from_features():
    features = domish.Element(("http://etherx.jabber.org/streams", "features"))
    features.addChild(s2s_sasl.mechanisms("EXTERNAL", "PLAIN"))
    assert s2s_sasl.offered(features) == {"EXTERNAL", "PLAIN"}
    assert s2s_sasl.failure_condition(s2s_sasl.failure("not-authorized", "why")) == "not-authorized"
