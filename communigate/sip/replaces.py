"""
The C{Replaces} header (RFC 3891), pure: a dialog named by its Call-ID
and the tags as the recipient of the header knows them (C{to-tag} its own,
C{from-tag} its peer's), with the C{early-only} flag.

What a server does with one is L{communigate.pbx.replaces} (toward a PBX
task's call) and L{communigate.pbx.transfer} (a REFER that makes a peer
send one).
"""

from __future__ import annotations

import attrs

__all__ = ["Replaces", "parse_replaces"]


@attrs.frozen
class Replaces:
    """
    A C{Replaces} header (RFC 3891): the dialog C{call_id} with
    C{to_tag} the recipient's tag and C{from_tag} its peer's.
    """

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def value(self) -> str:
        text = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        return text + (";early-only" if self.early_only else "")


def parse_replaces(value: str) -> Replaces:
    """
    C{callid;to-tag=..;from-tag=..[;early-only]} as a L{Replaces}.

    @raise ValueError: no Call-ID, a missing tag.
    """
    call_id, *parameters = [part.strip() for part in value.split(";")]
    if not call_id or any(c.isspace() for c in call_id):
        raise ValueError("Replaces has no Call-ID")
    values: dict[str, str] = {}
    early_only = False
    for parameter in parameters:
        name, equals, text = parameter.partition("=")
        name = name.strip().lower()
        if name == "early-only" and not equals:
            early_only = True
        elif name in ("to-tag", "from-tag") and text.strip():
            values[name] = text.strip().strip('"')
    if "to-tag" not in values or "from-tag" not in values:
        raise ValueError("Replaces needs a to-tag and a from-tag")
    return Replaces(call_id, values["to-tag"], values["from-tag"], early_only)
