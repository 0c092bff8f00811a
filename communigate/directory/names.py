"""
What a domain name, an object name and a telephone number may look like.

Names are compared without regard to case, as CommuniGate Pro does, so the
directory keeps them in lower case and every entry point normalises first.
"""

import re

from communigate.directory.errors import InvalidName

_DOMAIN_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_LOCAL_NAME = re.compile(r"[a-z0-9_][a-z0-9._-]{0,63}\Z")
_TELNUM = re.compile(r"\+?[0-9]{1,31}\Z")


def domain_name(text: str) -> str:
    """
    C{text} as a normalised domain name, or L{InvalidName}.
    """
    name = text.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(
        _DOMAIN_LABEL.match(label) for label in name.split(".")
    ):
        raise InvalidName(
            f"{text!r} is not a valid domain name: use letters, digits and "
            f"hyphens in dot-separated labels"
        )
    return name


def local_name(text: str) -> str:
    """
    C{text} as a normalised account, alias, forwarder or group name.
    """
    name = text.strip().lower()
    if not _LOCAL_NAME.match(name):
        raise InvalidName(
            f"{text!r} is not a valid object name: use up to 64 letters, "
            f"digits, '.', '-' and '_', not starting with '.' or '-'"
        )
    return name


def split_address(text: str, default_domain: str | None) -> tuple[str, str]:
    """
    The normalised C{(local, domain)} of C{name} or C{name@domain}; a bare
    name belongs to C{default_domain}.
    """
    local, at, domain = text.strip().rpartition("@")
    if not at:
        local, domain = domain, default_domain
        if domain is None:
            raise InvalidName(f"{text!r} has no domain part and there is no main domain")
    return local_name(local), domain_name(domain)


def telnum(text: str) -> str:
    """
    C{text} as a telephone number: digits, with an optional leading C{+}.
    """
    number = text.strip()
    if not _TELNUM.match(number):
        raise InvalidName(
            f"{text!r} is not a telephone number: use up to 31 digits with an "
            f"optional leading '+'"
        )
    return number
