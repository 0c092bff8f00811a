"""
The media server settings (C{GETMEDIASERVERSETTINGS},
C{SETMEDIASERVERSETTINGS}, C{UPDATEMEDIASERVERSETTINGS}): the media
relay's port range, idle timeout, session cap and addresses.

They live in the store as one record, C{server/media-server-settings}, a
data-format dictionary of the explicit values, like the SIP settings.
L{RelayConfiguration} parses them once per change: at once after this
process changed them, and within a second (a store generation check at
most once a second) after the admin tool did.

- C{PortRange} (C{30000-39999}): the UDP ports of relay legs, C{low-high};
  each leg of each stream takes an even RTP port and the odd one above it.
- C{IdleTimeout} (C{60}): seconds without a packet in either direction
  after which an answered call's relay is released (5-86400).
- C{MaxRelays} (C{1000}): relay sessions open at once; 0 refuses every
  call that needs one.
- C{Address} (empty): the IPv4 address relay ports bind to and are shown
  by; empty: the SIP listener's, or every interface.
- C{IPv6Address} (empty): the same for IPv6 legs.
- C{InBandDTMF} (C{Auto}): whether PBX media channels listen for DTMF
  tones in the audio.  C{Auto}: when the peer did not negotiate
  telephone-event (RFC 4733), so keys from a gateway that sends tones are
  heard; C{No}: never, which saves the detector's decoding and tone
  analysis (the largest part of such a channel's CPU) on calls whose tasks
  read no keys.  A task may change it for its own call
  (C{media_option("inbandDTMF", flag)}); this is the value it starts with.
  Not the relay's business, but it is a media setting the operator sets
  for the whole server, so it lives with the others.
"""

from __future__ import annotations

import attrs

from communigate.core.server_settings import CachedSettings, SettingsRecord
from communigate.network import address_setting

__all__ = ["DEFAULT_SETTINGS", "SETTINGS_KEY", "RelaySettings", "RelayConfiguration", "stored_settings"]

SETTINGS_KEY = "media-server-settings"

#: Every media server setting and its built-in value.
DEFAULT_SETTINGS = {
    "PortRange": "30000-39999",
    "IdleTimeout": "60",
    "MaxRelays": "1000",
    "Address": "",
    "IPv6Address": "",
    "InBandDTMF": "Auto",
}
#: The values of C{InBandDTMF}, lower-cased, and whether each runs the detector.
INBAND_DTMF_VALUES = {"auto": True, "no": False}

_MIN_PORT = 1024
_MAX_IDLE = 86400


def _integer(settings: dict, key: str, low: int, high: int) -> int:
    value = settings.get(key, DEFAULT_SETTINGS[key])
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return number


def _port_range(settings: dict) -> tuple[int, int]:
    value = settings.get("PortRange", DEFAULT_SETTINGS["PortRange"])
    low_text, dash, high_text = str(value).strip().partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        low = high = -1
    # At least two pairs (p, p + 1) with p even: one stream of one call.
    if not dash or not _MIN_PORT <= low < high <= 65535 or high - (low + low % 2) < 3:
        raise ValueError(
            f"PortRange must be low-high within {_MIN_PORT}-65535 holding at least two even/odd "
            f"port pairs, like 30000-39999, not {value!r}"
        )
    return low, high


def _inband_dtmf(settings: dict) -> bool:
    value = settings.get("InBandDTMF", DEFAULT_SETTINGS["InBandDTMF"])
    flag = INBAND_DTMF_VALUES.get(str(value).strip().lower())
    if flag is None:
        raise ValueError(f"InBandDTMF must be Auto or No, not {value!r}")
    return flag


@attrs.frozen
class RelaySettings:
    """
    The media server settings in force, parsed (see the module docstring).
    """

    port_low: int = 30000
    port_high: int = 39999
    idle_timeout: float = 60.0
    max_relays: int = 1000
    address: str = ""
    ipv6_address: str = ""
    inband_dtmf: bool = True

    @classmethod
    def from_data(cls, settings: dict) -> RelaySettings:
        """
        Parse a settings dictionary (missing keys take their built-in
        values); a bad value raises L{ValueError} naming the key and the
        values allowed.
        """
        if not isinstance(settings, dict):
            raise ValueError(f"the media server settings are a dictionary, not {settings!r}")
        unknown = set(settings) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ValueError(f"unknown media server settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
        low, high = _port_range(settings)
        return cls(
            port_low=low,
            port_high=high,
            idle_timeout=float(_integer(settings, "IdleTimeout", 5, _MAX_IDLE)),
            max_relays=_integer(settings, "MaxRelays", 0, 100_000),
            address=address_setting(settings, "Address", 4),
            ipv6_address=address_setting(settings, "IPv6Address", 6),
            inband_dtmf=_inband_dtmf(settings),
        )

    @property
    def pairs(self) -> int:
        """How many even/odd port pairs the range holds."""
        return (self.port_high - (self.port_low + self.port_low % 2) + 1) // 2


RECORD = SettingsRecord(SETTINGS_KEY, DEFAULT_SETTINGS)


def stored_settings(store) -> dict:
    """
    Every setting as the CLI shows it: the stored values over the
    built-in ones.
    """
    return RECORD.effective(store)


class RelayConfiguration(CachedSettings):
    """
    The media server settings of one store, parsed once per change
    (L{CachedSettings}).
    """

    def __init__(self, store, clock=None, recheck: float = 1.0) -> None:
        super().__init__(store, RECORD, RelaySettings.from_data, RelaySettings(),
                         what="media server settings", clock=clock, recheck=recheck)

    def replace(self, settings: dict, *, merge: bool) -> RelaySettings:
        """
        Store C{settings}: merged into the stored ones (C{default} restores
        a built-in value) or replacing them.  A bad value raises
        L{ValueError} and stores nothing.  In force at once.
        """
        if not isinstance(settings, dict):
            raise ValueError("the media server settings are a dictionary, like {PortRange = 30000-39999;}")
        return self.change(settings, merge=merge)
