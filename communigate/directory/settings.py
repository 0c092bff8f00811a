"""
CommuniGate Pro's settings inheritance.

An account's effective value of a setting is its own explicit value, else
its domain's account default, else the server's account default, else the
built-in value.  Domains inherit the same way from the server's domain
defaults.  C{UPDATE} commands merge keys and the value C{default} removes an
explicit key so that it is inherited again; C{SET} commands replace the
whole dictionary.
"""

from communigate.directory.errors import InvalidSettings

DEFAULT = "default"

# Built-in values: only settings the server acts on.  Later components add
# theirs here, so GETACCOUNTEFFECTIVESETTINGS shows every value in force.
BUILTIN_ACCOUNT_SETTINGS: dict[str, object] = {
    "AccessModes": "All",
    # RFC 4235 dialog state for SIP "dialog" subscribers (busy lamps).
    "DialogInfo": "NO",
    "MaxRosterItems": "500",
    "MaxSignalContacts": "10",
    # YES: every SIP call of the account goes through the media relay.
    "MediaRelay": "NO",
    "RealName": "",
    # Registering out to other SIP servers (SETACCOUNTRSIPS) [C name].
    "RSIPAllowed": "NO",
    "ServerAdministrator": "NO",
}

BUILTIN_DOMAIN_SETTINGS: dict[str, object] = {
    "DomainAccessModes": "All",
    "SignalToUnknown": "Rejected",
    "SignalRerouteAddress": "",
    "AccessToUnknown": "Rejected",
    # RFC 8760 order; phones that read only the first challenge (sipp
    # among them) need (MD5) here.
    "SIPDigestAlgorithms": ["SHA-256", "MD5"],
}


def checked(settings: object, what: str) -> dict:
    """
    C{settings} if it is a dictionary with non-empty text keys.
    """
    if not isinstance(settings, dict):
        raise InvalidSettings(f"{what} must be a dictionary, like {{Key = value;}}")
    for key in settings:
        if not isinstance(key, str) or not key:
            raise InvalidSettings(f"{what} has an empty key")
    return settings


def replaced(settings: dict) -> dict:
    """
    The explicit settings a C{SET} command leaves: C{default} values drop
    out.  Keys are kept sorted, as CommuniGate lists them.
    """
    return {key: settings[key] for key in sorted(settings) if settings[key] != DEFAULT}


def updated(current: dict, changes: dict) -> dict:
    """
    The explicit settings after an C{UPDATE} command merged C{changes}.
    """
    result = dict(current)
    for key, value in changes.items():
        if value == DEFAULT:
            result.pop(key, None)
        else:
            result[key] = value
    return dict(sorted(result.items()))


def effective(*levels: dict) -> dict:
    """
    The merge of inheritance levels, from the most general to the most
    specific, keys sorted so that output is stable.
    """
    merged: dict = {}
    for level in levels:
        merged.update(level)
    return dict(sorted(merged.items()))


def is_yes(value: object) -> bool:
    """
    Whether a flag setting is on; CommuniGate writes flags as C{YES}/C{NO},
    and the typed form C{#YES} reads as L{True}.
    """
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.upper() in ("YES", "TRUE", "1")
