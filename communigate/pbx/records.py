"""
Call records for the calls of PBX tasks: every call a task answers or
places leaves one L{CallRecord} (protocol C{pbx}) in the server's
L{communigate.cdr.records.CallRecords} when it ends, as the SIP proxy's
calls do (C{LISTCALLRECORDS}, the L{ICallRecordSink} plugins).

A B2BUA (C{gatewaycaller}, C{gatewayincoming}) so leaves two: the
caller's leg into the task and the leg the other task placed.

  - caller, callee: the INVITE's From and To (e-mail form); target: its
    Request-URI (the destination the task placed the call to, for an
    outgoing leg);
  - the account: the one the caller authenticated as (an incoming leg),
    the task's account (an outgoing leg);
  - started: when the INVITE came or was sent; answered: the 2xx;
    ended: now;
  - status: the final response (200 for an answered call, the rejection
    or the failure otherwise, 487 for a call cancelled unanswered);
  - cause: C{BYE from caller} / C{BYE from callee} (which side hung up),
    the failure (C{486 Busy Here}), C{cancelled}, C{no ACK} ...
  - the media quality from RTCP, when the call had a channel: the loss
    both ways (percent), the jitter of the peer's stream and the last
    round-trip time (ms), those that are known
    (L{communigate.pbx.rtcp_reports.ChannelRTCP.quality}).
"""

from __future__ import annotations

import re

from twisted.logger import Logger

from communigate.cdr.records import CallRecord
from communigate.pbx.leg import email_of

__all__ = ["call_record", "report_call"]

log = Logger()

_CODE = re.compile(r"^(\d{3})\b")


def _cause(call, incoming: bool) -> str:
    reason = call.end_reason or "ended"
    if reason == "BYE":  # the peer's BYE
        return "BYE from caller" if incoming else "BYE from callee"
    if reason == "hung up":  # ours
        return "BYE from callee" if incoming else "BYE from caller"
    if reason.startswith("rejected "):
        code = int(reason.split()[1])
        return f"{code} {_reason_phrase(code)}".strip()
    return reason


def _reason_phrase(code: int) -> str:
    from communigate.signal.model import REASONS

    return REASONS.get(code, "")


def _status(call) -> int:
    if call.answered_at is not None:
        return 200
    if call.final_code is not None:
        return call.final_code
    found = _CODE.match(call.end_reason or "")
    if found:
        return int(found.group(1))
    return 487 if call.end_reason == "cancelled" else 480


def call_record(call, now: float) -> CallRecord:
    """
    The record of C{call} (a L{communigate.pbx.call.Call}) ending at
    C{now}.
    """
    leg = call.leg
    invite = leg.invite
    incoming = leg.incoming
    if incoming:
        caller, callee = email_of(leg.remote), email_of(leg.local)
        target = invite.targets[0] if invite is not None and invite.targets else callee
        account = invite.submitter.account if invite is not None else None
    else:
        caller, callee = email_of(leg.local), email_of(leg.remote)
        target = call.target or callee
        account = call.task.account
    quality = _quality(call.channel)
    return CallRecord(
        protocol="pbx",
        call_id=leg.call_id,
        caller=caller,
        callee=callee,
        target=target,
        caller_account=account,
        started=call.started_at,
        answered=call.answered_at,
        ended=now,
        status=_status(call),
        cause=_cause(call, incoming),
        **quality,
    )


def _quality(channel) -> dict:
    rtcp = getattr(channel, "rtcp", None)
    if rtcp is None:
        return {}
    figures = rtcp.quality()
    fields = {}
    for name, field, scale in (
        ("loss", "rtcp_loss", 100), ("peer_loss", "rtcp_peer_loss", 100),
        ("jitter_ms", "jitter_ms", 1), ("rtt_ms", "rtt_ms", 1),
    ):
        if name in figures:
            fields[field] = round(figures[name] * scale, 2)
    return fields


def report_call(call) -> None:
    """
    Hand the record of C{call}, which just ended, to the server's call
    records (none kept when the server has none).  Never raises: a call
    ends whatever the records do.
    """
    service = call.task.service
    records = getattr(getattr(service, "context", None), "call_records", None)
    if records is None:
        return
    try:
        records.add(call_record(call, service.clock.seconds()))
    except Exception:
        log.failure("Call {call_id}: its call record was not kept", call_id=call.leg.call_id)
