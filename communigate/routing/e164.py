"""
Dialled numbers to E.164, so that the telnum tables hold one spelling.

People dial the way their phone network taught them: a local number
(C{3837461}), a long-distance one behind the national prefix
(C{03637111298}), a foreign one behind the international prefix
(C{0036301234567}).  Telnum assignments and ENUM both want the global
form C{+15553837461}, so the Router converts with the dialling plan
described by L{E164Settings} before it looks a number up.

The settings are stored CommuniGate-style, every value a string:

 - C{E164Conversion}: C{YES} or C{NO} (default C{NO}); with C{NO} only
   numbers already in C{+} form are E.164.
 - C{E164CountryCode}: 1 to 3 digits, not starting with 0 (C{1}).
 - C{E164AreaCode}: up to 12 digits, added to local numbers (C{555}).
 - C{E164NationalPrefix}: up to 4 digits dialled before an area code
   (C{0} in the slides' example, where C{03637111298} becomes
   C{+13637111298}).
 - C{E164InternationalPrefix}: up to 4 digits dialled before a country
   code (C{00}, or C{011} in North America).
 - C{E164LocalNumberLength}: how many digits a local number has, 0 to 15;
   0 turns local-number conversion off, so a 3-digit extension such as
   C{201} is never mistaken for a number.

With country C{1}, area C{555}, national C{0}, international C{00} and
local length C{7}, the slides' C{3837461} becomes C{+15553837461} and
C{03637111298} becomes C{+13637111298}.
"""

import re
from collections.abc import Mapping

import attrs

_E164 = re.compile(r"\+[1-9][0-9]{5,14}\Z")
_DIGITS = re.compile(r"[0-9]*\Z")

CONVERSION = "E164Conversion"
COUNTRY_CODE = "E164CountryCode"
AREA_CODE = "E164AreaCode"
NATIONAL_PREFIX = "E164NationalPrefix"
INTERNATIONAL_PREFIX = "E164InternationalPrefix"
LOCAL_NUMBER_LENGTH = "E164LocalNumberLength"


def _digits(setting: str, longest: int):
    def check(instance, attribute, value) -> None:
        if (
            not isinstance(value, str)
            or not _DIGITS.match(value)
            or len(value) > longest
        ):
            raise ValueError(
                f"{setting} must be up to {longest} digits, not {value!r}"
            )

    return check


def _check_country_code(instance, attribute, value) -> None:
    _digits(COUNTRY_CODE, 3)(instance, attribute, value)
    if value.startswith("0"):
        raise ValueError(
            f"{COUNTRY_CODE} must be 1 to 3 digits not starting with 0, not {value!r}"
        )


def _check_length(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 15:
        raise ValueError(
            f"{LOCAL_NUMBER_LENGTH} must be a number from 0 to 15, not {value!r}"
        )


def _check_enabled(instance, attribute, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{CONVERSION} must be YES or NO, not {value!r}")


@attrs.frozen
class E164Settings:
    """
    A dialling plan; see the module docstring for each setting.
    """

    country_code: str = attrs.field(default="", validator=_check_country_code)
    area_code: str = attrs.field(default="", validator=_digits(AREA_CODE, 12))
    national_prefix: str = attrs.field(
        default="", validator=_digits(NATIONAL_PREFIX, 4)
    )
    international_prefix: str = attrs.field(
        default="", validator=_digits(INTERNATIONAL_PREFIX, 4)
    )
    local_number_length: int = attrs.field(default=0, validator=_check_length)
    enabled: bool = attrs.field(default=False, validator=_check_enabled)

    def __attrs_post_init__(self) -> None:
        if self.enabled and not self.country_code:
            raise ValueError(
                f"{CONVERSION} is YES but {COUNTRY_CODE} is empty; "
                f"conversion needs a country code"
            )
        if self.national_prefix and self.national_prefix == self.international_prefix:
            raise ValueError(
                f"{NATIONAL_PREFIX} and {INTERNATIONAL_PREFIX} must differ, "
                f"both are {self.national_prefix!r}"
            )
        local_total = (
            len(self.country_code) + len(self.area_code) + self.local_number_length
        )
        if self.local_number_length and local_total > 15:
            raise ValueError(
                f"{COUNTRY_CODE}, {AREA_CODE} and {LOCAL_NUMBER_LENGTH} make "
                f"{local_total} digits; E.164 numbers have at most 15"
            )

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> "E164Settings":
        """
        Read the C{E164...} keys of a settings dictionary, ignoring the
        others; a missing key takes its default.
        """

        def text(key: str) -> str:
            value = settings.get(key, "")
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string, not {value!r}")
            return value.strip()

        conversion = text(CONVERSION).upper() or "NO"
        if conversion not in ("YES", "NO"):
            raise ValueError(
                f"{CONVERSION} must be YES or NO, not {settings[CONVERSION]!r}"
            )
        length = text(LOCAL_NUMBER_LENGTH) or "0"
        if not (length.isascii() and length.isdigit()):
            raise ValueError(
                f"{LOCAL_NUMBER_LENGTH} must be a number from 0 to 15, "
                f"not {settings[LOCAL_NUMBER_LENGTH]!r}"
            )
        return cls(
            country_code=text(COUNTRY_CODE),
            area_code=text(AREA_CODE),
            national_prefix=text(NATIONAL_PREFIX),
            international_prefix=text(INTERNATIONAL_PREFIX),
            local_number_length=int(length),
            enabled=conversion == "YES",
        )

    def to_settings(self) -> dict[str, str]:
        """
        The settings dictionary L{from_settings} reads back.
        """
        return {
            CONVERSION: "YES" if self.enabled else "NO",
            COUNTRY_CODE: self.country_code,
            AREA_CODE: self.area_code,
            NATIONAL_PREFIX: self.national_prefix,
            INTERNATIONAL_PREFIX: self.international_prefix,
            LOCAL_NUMBER_LENGTH: str(self.local_number_length),
        }


def is_e164(number: str) -> bool:
    """
    Whether C{number} is already global: C{+}, a first digit that can start
    a country code, 6 to 15 digits in all.
    """
    return bool(_E164.match(number))


def to_e164(number: str, settings: E164Settings) -> str | None:
    """
    C{number} in E.164 form, or L{None} when the dialling plan does not
    make it one (an extension, a malformed or too short number).

    The longer of the two prefixes is tried first, so that C{00} dialled
    abroad is not read as C{0} dialled for a long-distance call; the first
    prefix that matches decides.
    """
    if number.startswith("+"):
        return number if is_e164(number) else None
    if not settings.enabled or not number or not _DIGITS.match(number):
        return None
    prefixes = [
        (settings.international_prefix, ""),
        (settings.national_prefix, settings.country_code),
    ]
    prefixes.sort(key=lambda rule: len(rule[0]), reverse=True)
    for prefix, replacement in prefixes:
        if prefix and number.startswith(prefix):
            candidate = f"+{replacement}{number[len(prefix):]}"
            return candidate if is_e164(candidate) else None
    if len(number) == settings.local_number_length:
        candidate = f"+{settings.country_code}{settings.area_code}{number}"
        return candidate if is_e164(candidate) else None
    return None
