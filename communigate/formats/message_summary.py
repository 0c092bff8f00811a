"""
RFC 3842 C{application/simple-message-summary} bodies: what a
C{message-summary} NOTIFY carries to light a phone's message lamp.  Pure.
"""

from __future__ import annotations

import re

import attrs

CONTENT_TYPE = "application/simple-message-summary"
_COUNTS = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*(?:\(\s*(\d+)\s*/\s*(\d+)\s*\))?\s*")


@attrs.frozen
class Summary:
    """
    C{messages}: message class (C{voice-message} ...) to C{(new, old,
    urgent new, urgent old)}.
    """

    waiting: bool
    account: str | None = None
    messages: tuple[tuple[str, tuple[int, int, int, int]], ...] = ()


def serialize(account: str | None, new: int, old: int, urgent_new: int = 0, urgent_old: int = 0) -> bytes:
    """The body for voice-message counts of C{account} (a URI)."""
    lines = [f"Messages-Waiting: {'yes' if new else 'no'}"]
    if account:
        lines.append(f"Message-Account: {account}")
    lines.append(f"Voice-Message: {new}/{old} ({urgent_new}/{urgent_old})")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def parse(data: bytes) -> Summary:
    """
    @raise ValueError: no C{Messages-Waiting} line, or counts that do not
        read.
    """
    waiting = None
    account = None
    messages = []
    for line in data.decode("utf-8", "replace").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == "messages-waiting":
            waiting = value.lower() == "yes"
        elif name == "message-account":
            account = value
        elif name.endswith("-message"):
            match = _COUNTS.fullmatch(value)
            if match is None:
                raise ValueError(f"bad message counts {value!r}")
            new, old, urgent_new, urgent_old = (int(g) if g else 0 for g in match.groups())
            messages.append((name, (new, old, urgent_new, urgent_old)))
    if waiting is None:
        raise ValueError("no Messages-Waiting line")
    return Summary(waiting, account, tuple(messages))
