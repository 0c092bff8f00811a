"""
Reliable provisional responses (RFC 3262, the C{100rel} extension) for a
task's calls.

B{Placing a call}: our INVITE says C{Supported: 100rel}.  A provisional
response (101-199) that requires C{100rel} and carries an C{RSeq} is
acknowledged with a PRACK in its early dialog (C{RAck: RSEQ CSEQ INVITE})
and acted on only when it is the first of its early dialog (its To tag)
or the next in sequence; a retransmission, or one that arrives out of
order, is neither acknowledged nor acted on (section 4).  L{ProvisionalAcks}
is that judgement, pure.

B{Answering one}: C{provision_call(reliably=True)} sends the 1xx with
C{Require: 100rel} and an C{RSeq} (random first, then one more each time,
section 3) when the caller's INVITE supports or requires C{100rel}, and
retransmits it at T1, 2*T1 ... (at most T2 apart) until the caller's
PRACK comes; the verb waits for it, as CG/PL's C{ProvisionCall} with
C{reliably} does [C].  Without a PRACK after 64*T1 the call is rejected
with 500 [D] (the RFC asks for a 5xx) and the verb fails.  A caller whose
INVITE I{requires} C{100rel} gets every provisional response reliably,
whatever the program asked; one that does not support it gets them
unreliably (C{reliably} is a wish).  A PRACK matching no response we sent
gets 481; one for a response already acknowledged 200 again.
L{ReliableProvisionals} keeps that state for one call.

Extensions: an INVITE to a task that requires an option we do not
implement is refused with 420 and C{Unsupported} (RFC 3261 8.2.2.3;
L{unsupported_options}).
"""

from __future__ import annotations

import random

import attrs
from twisted.logger import Logger

from communigate.pbx.events import CallState
from communigate.pbx.leg import LegError
from communigate.signal.model import response
from communigate.sip.headers import HeaderError, parse_name_addr

__all__ = ["OPTION", "ProvisionalAcks", "ReliableProvisionals", "SUPPORTED_OPTIONS", "option_tags", "rack",
           "reliable_rseq", "unsupported_options"]

OPTION = "100rel"
#: The option tags a task's call implements as the called side.
SUPPORTED_OPTIONS = frozenset({OPTION, "replaces"})
T1, T2 = 0.5, 4.0
_MAX_RSEQ = 2**31 - 1

log = Logger()


def _values(headers, name: str, compact: str | None = None) -> list[str]:
    names = {name.lower()} | ({compact} if compact else set())
    return [value for header, value in headers if header.lower() in names]


def option_tags(headers, name: str) -> set[str]:
    """The option tags of every C{name} header (C{Require}, C{Supported}: also C{k})."""
    compact = "k" if name.lower() == "supported" else None
    return {tag.strip().lower() for value in _values(headers, name, compact) for tag in value.split(",") if tag.strip()}


def unsupported_options(headers) -> list[str]:
    """The option tags C{headers} (an INVITE's) require that we do not implement, sorted."""
    return sorted(option_tags(headers, "Require") - SUPPORTED_OPTIONS)


def reliable_rseq(code: int, headers) -> int | None:
    """The RSeq of a reliable provisional response (L{None}: not one, or a bad RSeq)."""
    if not 101 <= code <= 199 or OPTION not in option_tags(headers, "Require"):
        return None
    values = _values(headers, "RSeq")
    if len(values) != 1 or not values[0].strip().isdigit():
        return None
    rseq = int(values[0].strip())
    return rseq if 1 <= rseq <= _MAX_RSEQ else None


def rack(value: str | None) -> tuple[int, int, str] | None:
    """C{RAck: RSEQ CSEQ METHOD} read, or L{None}."""
    parts = (value or "").split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2].upper()


class ProvisionalAcks:
    """
    The caller's side (section 4): per early dialog, the RSeq of the last
    reliable provisional acted on.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def judge(self, code: int, headers, to_tag: str | None) -> tuple[bool, int | None]:
        """
        Whether to act on a provisional response, and the RSeq to PRACK
        (L{None}: an unreliable one, no PRACK).
        """
        rseq = reliable_rseq(code, headers)
        if rseq is None:
            return True, None
        if to_tag is None:
            return False, None  # no early dialog to acknowledge it in
        last = self._last.get(to_tag)
        if last is not None and rseq != last + 1:
            return False, None
        self._last[to_tag] = rseq
        return True, rseq


class ReliableProvisionals:
    """
    The called side (section 3) for one call: the 1xx out and not yet
    acknowledged, its retransmissions on C{clock}, and what the PRACK
    settles.  C{send(answer)} sends a Signal response; C{settled(error)}
    is told once per reliable 1xx: L{None} when its PRACK came, else why
    it failed.
    """

    def __init__(self, clock, send, settled) -> None:
        self._clock = clock
        self._send = send
        self._settled = settled
        self._rseq = random.randint(1, 2**30)  # section 3: below 2**31 with room to grow
        self._pending = None  # (rseq, answer)
        self._acknowledged: set[int] = set()
        self._timer = None
        self._interval = T1
        self._started = 0.0

    @property
    def waiting(self) -> bool:
        return self._pending is not None

    def next_rseq(self) -> int:
        rseq, self._rseq = self._rseq, self._rseq + 1
        return rseq

    def send(self, rseq: int, answer) -> None:
        """Send reliable C{answer} (its headers carry C{rseq}) and keep it until its PRACK."""
        self.stop()
        self._pending = (rseq, answer)
        self._interval, self._started = T1, self._clock.seconds()
        self._send(answer)
        self._timer = self._clock.callLater(self._interval, self._retransmit)

    def _retransmit(self) -> None:
        self._timer = None
        if self._pending is None:
            return
        if self._clock.seconds() - self._started >= 64 * T1 - 1e-9:
            self._pending = None
            self._settled("500 No PRACK for a reliable provisional response")
            return
        self._send(self._pending[1])
        self._interval = min(self._interval * 2, T2)
        self._timer = self._clock.callLater(self._interval, self._retransmit)

    def prack(self, value: str | None, invite_cseq: int | None) -> tuple[int, bool]:
        """
        A PRACK's C{RAck}: the status to answer it with (200, or 481 when
        it acknowledges nothing we sent), and whether it acknowledged the
        response out now -- then the caller tells C{settled}, I{after}
        answering the PRACK, so that our 200 to it goes before anything
        the acknowledgement lets the program send (its 200 to the INVITE).
        """
        found = rack(value)
        if found is None or found[1] != invite_cseq or found[2] != "INVITE":
            return 481, False
        rseq = found[0]
        if self._pending is not None and self._pending[0] == rseq:
            self._acknowledged.add(rseq)
            self.stop()
            return 200, True
        return (200 if rseq in self._acknowledged else 481), False

    def acknowledged(self) -> None:
        """Tell C{settled} that the PRACK came (see L{prack})."""
        self._settled(None)

    def stop(self) -> None:
        """No more retransmissions (acknowledged, or the call was answered or ended)."""
        self._pending = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class ReliableCall:
    """
    The C{100rel} part of L{communigate.pbx.call.Call} (see the module
    docstring): PRACKs for the call we place, reliable provisionals and
    the PRACKs for the call we answer.
    """

    _acks: ProvisionalAcks | None = None
    _reliable: ReliableProvisionals | None = None
    _reliable_settled = None  # what the task waits on: told None or an error text

    # -- placing: the peer's reliable provisionals ---------------------------------

    def _provisional_wanted(self, answer) -> bool:
        """
        Whether to act on provisional C{answer}; a reliable one is
        acknowledged (PRACK) first.
        """
        if self._acks is None:
            self._acks = ProvisionalAcks()
        to_tag = _to_tag(answer.headers)
        act, rseq = self._acks.judge(answer.code, answer.headers, to_tag)
        if rseq is not None:
            self._prack(answer, rseq)
        return act

    def _prack(self, answer, rseq: int) -> None:
        try:
            early = self.leg.early(answer)
            signal = early.request("PRACK", self.task.submitter,
                                   headers=(("RAck", f"{rseq} {self.leg.invite_cseq} INVITE"),))
        except LegError as error:
            log.info("Call {call_id}: a reliable provisional response without a usable early dialog: {error}",
                     call_id=self.leg.call_id, error=error)
            return
        self.leg.local_cseq = early.local_cseq  # later requests of the dialog count on from the PRACK's
        self._send(signal)

    # -- answering: our reliable provisionals ---------------------------------------

    def _caller_options(self) -> tuple[set[str], set[str]]:
        headers = self.leg.invite.headers if self.leg.invite is not None else ()
        return option_tags(headers, "Supported"), option_tags(headers, "Require")

    def _reliably(self, wanted: bool) -> bool:
        """Whether our next provisional goes reliably (the caller's options decide; see the module docstring)."""
        supported, required = self._caller_options()
        if OPTION in required:
            return True
        return wanted and OPTION in supported

    def _provision_reliably(self, answer, settled) -> None:
        """
        Send 1xx C{answer} reliably; C{settled(error)} is called in the
        task's turn when its PRACK came (L{None}) or never will.
        """
        if self._reliable is None:
            self._reliable = ReliableProvisionals(self._service.clock, self.responder.provisional,
                                                  self._reliable_done)
        rseq = self._reliable.next_rseq()
        self._register()  # the PRACK comes in the early dialog
        self._reliable_settled = settled
        headers = answer.headers + (("Require", OPTION), ("RSeq", str(rseq)))
        self._reliable.send(rseq, _with_headers(answer, headers))

    def _reliable_done(self, error) -> None:
        """From L{ReliableProvisionals}: a PRACK came (in our turn), or 64*T1 passed (on the clock)."""
        if error is None:
            self._reliable_settle(None)
        else:
            self.task.later(self._reliable_failed, error)

    def _reliable_failed(self, error: str) -> None:
        self._reliable_settle(error)  # before the rejection settles it as "ended"
        if self.state in (CallState.INCOMING, CallState.PROVISIONED):
            code, _, text = error.partition(" ")
            self.reject(int(code), text)
            self.task._call_ended(self, "no PRACK")

    def _reliable_settle(self, error) -> None:
        settled, self._reliable_settled = self._reliable_settled, None
        if settled is not None:
            settled(error)

    def _stop_reliable(self) -> None:
        if self._reliable is not None:
            self._reliable.stop()
        self._reliable_settle("the call was answered or ended before the PRACK")

    def _peer_PRACK(self, signal, responder) -> None:
        if self._reliable is None:
            responder.final(response(481, "No reliable provisional response to acknowledge"))
            return
        status, now = self._reliable.prack(signal.header("RAck"), _cseq_number(self.leg.invite))
        responder.final(response(status) if status != 200 else self.leg.answer(200, "OK"))
        if now:
            self._reliable.acknowledged()


def _to_tag(headers) -> str | None:
    value = next((v for n, v in headers if n.lower() in ("to", "t")), None)
    if value is None:
        return None
    try:
        return parse_name_addr(value, "To").tag
    except HeaderError:
        return None


def _cseq_number(signal) -> int | None:
    """The CSeq number of the peer's INVITE (what a PRACK's RAck repeats)."""
    value = (signal.header("CSeq") or "") if signal is not None else ""
    number = value.split()[0] if value.split() else ""
    return int(number) if number.isdigit() else None


def _with_headers(answer, headers):
    return attrs.evolve(answer, headers=tuple(headers))
