"""Tests for communigate.routing.e164: dialled numbers to E.164."""

import pytest
from hypothesis import given, strategies as st

from communigate.routing.e164 import E164Settings, is_e164, to_e164

#: The slides' plan: North-American-style country 1, area 555, local numbers
#: of 7 digits, "0" before a long-distance number, "00" before a foreign one.
SLIDES = E164Settings(
    country_code="1", area_code="555", national_prefix="0",
    international_prefix="00", local_number_length=7, enabled=True,
)


@pytest.mark.parametrize("dialled, e164", [
    ("3837461", "+15553837461"),
    ("03637111298", "+13637111298"),
    ("0036301234567", "+36301234567"),
    ("+15553837461", "+15553837461"),
])
def test_the_slides_examples(dialled, e164):
    assert to_e164(dialled, SLIDES) == e164


@pytest.mark.parametrize("dialled", [
    "201",            # an extension
    "38374610",       # neither local length nor a prefix
    "000123456",      # a country code cannot start with 0
    "00123",          # too short after the prefix
    "0012345678901234567",  # more than 15 digits
    "+12345",         # too short
    "+0123456789",    # no country code starts with 0
    "", "+", "383-7461", "abcdefg", "٣٨٣٧٤٦١",
])
def test_what_is_not_a_number_in_the_plan_gives_none(dialled):
    assert to_e164(dialled, SLIDES) is None


def test_the_longer_prefix_wins_whichever_is_national():
    plan = E164Settings(
        country_code="1", national_prefix="011", international_prefix="0", enabled=True,
    )
    assert to_e164("0114155551234", plan) == "+14155551234"
    assert to_e164("036301234567", plan) == "+36301234567"


def test_north_american_plan():
    plan = E164Settings(
        country_code="1", area_code="415", national_prefix="1",
        international_prefix="011", local_number_length=7, enabled=True,
    )
    assert to_e164("5551234", plan) == "+14155551234"
    assert to_e164("12125551234", plan) == "+12125551234"
    assert to_e164("01136301234567", plan) == "+36301234567"


def test_conversion_off_keeps_only_global_numbers():
    plan = E164Settings(
        country_code="1", area_code="555", national_prefix="0",
        international_prefix="00", local_number_length=7, enabled=False,
    )
    assert to_e164("3837461", plan) is None
    assert to_e164("+15553837461", plan) == "+15553837461"


def test_without_a_local_length_local_numbers_are_not_converted():
    plan = E164Settings(country_code="36", national_prefix="06", enabled=True)
    assert to_e164("1234567", plan) is None
    assert to_e164("0611234567", plan) == "+3611234567"


def test_settings_read_from_commugate_style_strings():
    settings = E164Settings.from_settings({
        "E164Conversion": "YES", "E164CountryCode": "1", "E164AreaCode": "555",
        "E164NationalPrefix": "0", "E164InternationalPrefix": "00",
        "E164LocalNumberLength": "7", "SignalToUnknown": "Rejected",
    })
    assert settings == SLIDES


def test_missing_settings_take_the_defaults():
    assert E164Settings.from_settings({}) == E164Settings()
    assert E164Settings.from_settings({"E164Conversion": "no"}).enabled is False


def test_to_settings_writes_every_key_as_a_string():
    assert SLIDES.to_settings() == {
        "E164Conversion": "YES", "E164CountryCode": "1", "E164AreaCode": "555",
        "E164NationalPrefix": "0", "E164InternationalPrefix": "00",
        "E164LocalNumberLength": "7",
    }


@pytest.mark.parametrize("settings, message", [
    ({"E164Conversion": "maybe"}, "E164Conversion must be YES or NO, not 'maybe'"),
    ({"E164CountryCode": "1a"}, "E164CountryCode must be up to 3 digits"),
    ({"E164CountryCode": "1234"}, "E164CountryCode must be up to 3 digits"),
    ({"E164CountryCode": "01"}, "E164CountryCode must be 1 to 3 digits not starting with 0"),
    ({"E164AreaCode": "(415)"}, "E164AreaCode must be up to 12 digits"),
    ({"E164NationalPrefix": "+"}, "E164NationalPrefix must be up to 4 digits"),
    ({"E164InternationalPrefix": "00000"}, "E164InternationalPrefix must be up to 4 digits"),
    ({"E164LocalNumberLength": "seven"}, "E164LocalNumberLength must be a number from 0 to 15"),
    ({"E164LocalNumberLength": "16"}, "E164LocalNumberLength must be a number from 0 to 15"),
    ({"E164LocalNumberLength": "-1"}, "E164LocalNumberLength must be a number from 0 to 15"),
    ({"E164LocalNumberLength": 7}, "E164LocalNumberLength must be a string"),
    ({"E164Conversion": "YES"}, "E164Conversion is YES but E164CountryCode is empty"),
    ({"E164NationalPrefix": "0", "E164InternationalPrefix": "0"}, "must differ"),
    ({"E164CountryCode": "123", "E164AreaCode": "12345678",
      "E164LocalNumberLength": "7"}, "at most 15"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        E164Settings.from_settings(settings)


def test_constructor_validates_too():
    with pytest.raises(ValueError, match="E164LocalNumberLength"):
        E164Settings(local_number_length=True)
    with pytest.raises(ValueError, match="E164Conversion must be YES or NO"):
        E164Settings(country_code="1", enabled="YES")


@st.composite
def plans(draw):
    country = draw(st.from_regex(r"([1-9][0-9]{0,2})?", fullmatch=True))
    area = draw(st.from_regex(r"[0-9]{0,4}", fullmatch=True))
    national = draw(st.from_regex(r"[0-9]{0,3}", fullmatch=True))
    international = draw(st.from_regex(r"[0-9]{0,4}", fullmatch=True).filter(
        lambda prefix: not prefix or prefix != national))
    length = draw(st.integers(0, 15 - len(country) - len(area)))
    return E164Settings(country, area, national, international, length,
                        enabled=bool(country) and draw(st.booleans()))


numbers = st.one_of(
    st.from_regex(r"\+?[0-9]{0,18}", fullmatch=True),
    st.text(max_size=20),
)


@given(plans())
def test_settings_round_trip_through_the_store(plan):
    assert E164Settings.from_settings(plan.to_settings()) == plan


@given(numbers, plans())
def test_a_result_is_always_plus_and_6_to_15_digits(number, plan):
    result = to_e164(number, plan)
    assert result is None or is_e164(result)


@given(numbers, plans())
def test_conversion_is_idempotent(number, plan):
    result = to_e164(number, plan)
    if result is not None:
        assert to_e164(result, plan) == result


@given(st.from_regex(r"\+[1-9][0-9]{5,14}", fullmatch=True), plans())
def test_an_e164_number_is_kept_whatever_the_plan(number, plan):
    assert to_e164(number, plan) == number
