"""
The PSTN gateway applications: C{gatewaycaller} (calls out to the PSTN
through a gateway) and C{gatewayincoming} (calls coming in from one), both
B2BUAs built from the task API's bridging verbs.

C{gatewaycaller{NUMBER}#postmaster} -- usually reached through the Router
(C{S:<*@pstn> = gatewaycaller{*}#postmaster}):

  1. the caller must have authenticated (L{Task.remote_authentication});
     a caller who has not gets 403 [D];
  2. the caller's effective C{PSTN*} settings (account, then domain
     defaults, then server defaults) name the gateways and the
     credentials (L{PSTNSettings}); missing or bad settings disable
     dial-out for the account (403, logged);
  3. for each gateway in turn a second task (L{GatewayLeg}) places the
     call -- Request-URI C{sip:NUMBER@gateway}, From
     C{sip:PSTNFromName@gateway}, digest credentials for a challenge --
     and the caller's task bridges with it transparently (C{start_bridge}
     / C{start_bridged_call}: the INVITE carries the caller's own SDP
     offer): the gateway's ringing is relayed to the caller, its answer
     answers the caller, and the media flows between the two;
  4. a gateway that fails with a 5xx (its 503, or no answer at all) or
     times out (408) before any provisional response passes the call to
     the next gateway (L{fails_over}); a 4xx or 6xx is the caller's
     answer;
  5. once bridged, either side's hang-up ends both calls.

C{gatewayincoming{DESTINATION,bridge,media,mixer}#account} takes a call
from a gateway to C{DESTINATION} (any address the Router reads); see
L{GatewayIncoming} for what the flags do.
"""

from __future__ import annotations

import re

import attrs
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.bridging import UNCOPIED
from communigate.pbx.events import BridgeMode, CallError, Event, TaskMode
from communigate.sip.headers import HeaderError, parse_name_addr

__all__ = [
    "GatewayCaller",
    "GatewayIncoming",
    "GatewayLeg",
    "PSTNSettingError",
    "PSTNSettings",
    "gateway_list",
    "fails_over",
    "gateway_uri",
    "pstn_number",
]

log = Logger()



def fails_over(code: int | None) -> bool:
    """
    Whether a failure with C{code} (before any provisional response)
    passes the call to the next gateway [D]: a timeout (408) or a server
    failure (5xx: the gateway's 503, or no answer at all, which the SIP
    side reports as 503 and the Signal service hands on as 500, RFC 3261
    section 16.7).  A 4xx or 6xx is the called number's answer (busy,
    unknown, declined) and goes back to the caller.
    """
    return code is not None and (code == 408 or 500 <= code <= 599)
#: The event that tells a leg its starter's caller is gone.
HANG_UP = "HangUp"
#: How long the leg task waits for the caller's StartBridge.
_BRIDGE_WAIT = 30.0
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_CODE = re.compile(r"^(\d{3})\b")


class PSTNSettingError(ValueError):
    """
    An account's C{PSTN*} settings cannot place a call; the message names
    the setting and what it should be.
    """


def gateway_list(value) -> list[str]:
    """
    The gateways of a C{PSTNGatewayDomain} value, in the order to try
    them: one C{host[:port]}, an array of them, or a dictionary
    C{{gw1="11.22.33.44:5061"; gw2=pstn.org;}} (tried in the order
    written) [C format].

    @raise PSTNSettingError: no gateway, or one that is no host[:port].
    """
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = [value]
    else:
        items = []
    gateways = []
    for item in items:
        text = item.strip() if isinstance(item, str) else ""
        if text.lower().startswith("sip:"):
            text = text[4:]
        if not _HOST.match(text):
            raise PSTNSettingError(
                f"PSTNGatewayDomain: {item!r} is not a gateway; use host[:port], an array of them, "
                f'or a dictionary like {{gw1="11.22.33.44:5061"; gw2=pstn.org;}}'
            )
        gateways.append(text)
    if not gateways:
        raise PSTNSettingError("PSTNGatewayDomain is not set; PSTN calls are disabled for this account")
    return gateways


def pstn_number(text: str) -> str:
    """
    The number to dial: the digits of C{text}, with its leading C{+} (as
    CG/PL's C{PhoneNumberToSIPURI} keeps them); C{*} and C{#} stay too.
    """
    text = (text or "").strip()
    kept = "".join(ch for ch in text if ch.isdigit() or ch in "*#")
    return ("+" + kept) if text.startswith("+") and kept else kept


def gateway_uri(user: str, gateway: str) -> str:
    return f"sip:{user}@{gateway}"


@attrs.frozen
class PSTNSettings:
    """
    What C{gatewaycaller} reads from the caller's effective settings [C
    names]: C{PSTNGatewayDomain} (the gateways), C{PSTNGatewayAuthName}
    and C{PSTNGatewayPassword} (digest credentials, when the gateway
    challenges), C{PSTNFromName} (the caller ID: the user part of From;
    default [D]: the caller's account name).
    """

    gateways: tuple[str, ...]
    from_name: str
    auth_name: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, settings: dict, account: str) -> PSTNSettings:
        """
        @raise PSTNSettingError: the settings cannot place a call.
        """
        gateways = tuple(gateway_list(settings.get("PSTNGatewayDomain")))
        from_name = settings.get("PSTNFromName") or account.partition("@")[0]
        if not isinstance(from_name, str) or not re.fullmatch(r"[A-Za-z0-9+._*#-]+", from_name):
            raise PSTNSettingError(f"PSTNFromName: {from_name!r} is not a user name or number")
        auth_name = settings.get("PSTNGatewayAuthName") or None
        password = settings.get("PSTNGatewayPassword") or None
        if (auth_name is None) != (password is None) or not all(
            v is None or isinstance(v, str) for v in (auth_name, password)
        ):
            raise PSTNSettingError("PSTNGatewayAuthName and PSTNGatewayPassword are set together, as text")
        return cls(gateways, from_name, auth_name, password)

    @property
    def credentials(self) -> tuple[str, str] | None:
        return None if self.auth_name is None else (self.auth_name, self.password)


def _code(error) -> int | None:
    code = getattr(error, "code", None)
    if code:
        return code
    found = _CODE.match(str(error))
    return int(found.group(1)) if found else None


def _uri_of(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(parse_name_addr(value).uri)
    except HeaderError:
        return None


async def _until_either_hangs_up(task) -> None:
    """
    Bridged: wait until our peer hangs up or the bridge breaks (the other
    side's peer hung up), then hang up ours.
    """
    while True:
        item = await task.read_input(None)
        if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
            if task.call is not None:
                await task.disconnect()
            return


async def _mixed(task, destination: str) -> None:
    """
    C{gatewayincoming{DEST,mixer}}: L{communigate.pbx.gateway_mixer.mix_out},
    a failure answered to the gateway as the bridge's is.
    """
    from communigate.pbx.gateway_mixer import mix_out

    task.set_status(f"calling {destination}")
    try:
        await mix_out(task, destination, _uri_of(task.remote_uri()) or "")
    except CallError as error:
        await _refuse_for_destination(task, error)


async def _refuse_for_destination(task, error: CallError) -> None:
    """
    Answer the gateway's call with why the destination was not reached:
    its final status, or 480 for a 503 (RFC 3261 16.7 would turn it into
    500) or a failure without one.
    """
    if task.call is None:
        return
    code = _code(error)
    if code is None or code == 503 or not 300 <= code <= 699:
        await task.reject_call(480, "The destination cannot be reached")
    else:
        await task.reject_call(code, str(error)[4:])


async def bridge_out(task, destination: str, leg_parameters: tuple[str, ...],
                     mode: BridgeMode = BridgeMode.TRANSPARENT) -> None:
    """
    Bridge C{task}'s incoming call with a new L{GatewayLeg} task that calls
    C{destination} (transparently by default: the leg's INVITE carries the
    caller's offer); raises L{CallError} with the failure.
    """
    leg = task.start_task(GATEWAY_LEG, (destination, *leg_parameters))
    try:
        await task.start_bridge(leg, mode)
    except CallError:
        if task.call is None:
            # Our caller gave up (CANCEL) while the leg's call rang: so
            # does the leg.
            task.send_event(leg, HANG_UP)
        raise


@implementer(ICallApplication)
class GatewayLeg:
    """
    The outgoing half of the gateway B2BUAs (started by them, never
    routed to): waits for the starter's C{StartBridge}, places the call
    with C{start_bridged_call} and stays until either side hangs up.

    Parameters: the destination, then optionally the From URI and the
    account whose C{PSTN*} credentials answer a challenge.
    """

    name = "gatewayleg"
    description = "The outgoing half of gatewaycaller and gatewayincoming (started by them)."

    async def run(self, task) -> None:
        destination, caller, account = (tuple(task.parameters) + ("", "", ""))[:3]
        options = {}
        if caller:
            options["caller"] = caller
        if account:
            try:
                settings = PSTNSettings.of(task.service.context.directory.account_effective_settings(account), account)
            except (PSTNSettingError, LookupError, ValueError):
                settings = None
            if settings is not None and settings.credentials is not None:
                options["credentials"] = settings.credentials
        copied = copied_header_names(task.service.context.directory, task.account)
        if copied:
            options["copy_headers"] = copied
        event = await task.read_input(_BRIDGE_WAIT)
        if not isinstance(event, Event) or not event.is_start_bridge:
            return
        task.set_status(f"calling {destination}")
        try:
            await task.start_bridged_call(destination, event, **options)
        except CallError:
            return  # the starter's start_bridge raises with it
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_call_completed:
                if item.parameter is not None:
                    return
                task.set_status(f"connected to {destination}")
                continue
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge or item.what == HANG_UP):
                if task.call is not None:
                    await task.disconnect()  # a CANCEL while it rings
                return


GATEWAY_LEG = GatewayLeg()

#: The account setting naming the headers of a gateway call's INVITE that
#: its bridged call carries on (e.g. C{(Subject, P-Asserted-Identity,
#: Privacy)}); none by default: the two calls share nothing [D].
COPIED_HEADERS_SETTING = "BridgedCallHeaders"


def copied_header_names(directory, account: str) -> tuple[str, ...]:
    """
    C{account}'s L{COPIED_HEADERS_SETTING}, less the names never copied
    (logged): a bad setting must not stop its calls.
    """
    try:
        names = directory.account_effective_settings(account).get(COPIED_HEADERS_SETTING)
    except Exception as error:  # an unknown account, a storage error: copy nothing
        log.info("gatewayleg: no settings of {account}: {error}", account=account, error=error)
        return ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        return ()
    good = tuple(str(name).strip() for name in names if str(name).strip().lower() not in UNCOPIED)
    if len(good) != len(names):
        log.warn("gatewayleg: {setting} of {account} names headers never copied; ignored",
                 setting=COPIED_HEADERS_SETTING, account=account)
    return good


@implementer(IPlugin, ICallApplication)
class GatewayCaller:
    """
    Calls out to the PSTN through the gateways of the caller's C{PSTN*}
    settings (see the module docstring).  Parameter: the number.
    """

    name = "gatewaycaller"
    description = "Places PSTN calls through the gateways in the caller's PSTN settings (a B2BUA)."

    async def run(self, task) -> None:
        caller = task.remote_authentication()
        if caller is None:
            await task.reject_call(403, "PSTN calls need an authenticated caller")
            return
        number = pstn_number(task.parameters[0] if task.parameters else "")
        if not number:
            await task.reject_call(484, "Address Incomplete")
            return
        try:
            settings = PSTNSettings.of(task.service.context.directory.account_effective_settings(caller), caller)
        except (PSTNSettingError, LookupError, ValueError) as error:
            log.warn("gatewaycaller: {caller} cannot call out: {error}", caller=caller, error=error)
            await task.reject_call(403, "PSTN calls are not allowed")
            return
        failure: CallError | None = None
        for gateway in settings.gateways:
            task.set_status(f"calling {number} via {gateway}")
            try:
                await bridge_out(
                    task, gateway_uri(number, gateway),
                    (gateway_uri(settings.from_name, gateway), caller),
                )
            except CallError as error:
                failure = error
                log.info("gatewaycaller: {number} via {gateway} failed: {error} (mode {mode})",
                         number=number, gateway=gateway, error=error, mode=task.mode.value)
                if task.call is None:
                    return  # the caller gave up
                if fails_over(_code(error)) and task.mode is TaskMode.INCOMING:
                    log.info("gatewaycaller: {gateway} failed ({error}); trying the next gateway",
                             gateway=gateway, error=error)
                    continue
                break
            task.set_status(f"connected to {number} via {gateway}")
            await _until_either_hangs_up(task)
            return
        code = _code(failure)
        if code is None or code == 503 or not 300 <= code <= 699:
            # [D] a 503 would reach the caller as 500 (RFC 3261 16.7).
            await task.reject_call(480, "No PSTN gateway took the call")
        else:
            await task.reject_call(code, str(failure)[4:])


@implementer(IPlugin, ICallApplication)
class GatewayIncoming:
    """
    Takes a call from a PSTN gateway to the destination in its first
    parameter; the flags after it [D semantics, C names]:

      - C{bridge}: a B2BUA -- a second task calls the destination and
        the two calls are bridged transparently (the callee answers the
        gateway's SDP, the media flows between them), so the gateway sees
        one dialog that never moves (transfers, re-INVITEs and forking
        stay on our side);
      - C{media}: the media must pass through the server: the same B2BUA
        with simple bridging (every frame through the two tasks'
        channels), also when C{bridge} is not given;
      - C{mixer}: the second task's call and ours are joined through a
        conference mixer, in a two-party room the ingress task owns
        (L{communigate.pbx.gateway_mixer}), so more parties can join it.

    Without a flag the call is redirected to the destination (the Signal
    service rings it; the task steps out).
    """

    name = "gatewayincoming"
    description = "Takes calls from PSTN gateways to the address in its parameter (bridge, media, mixer)."

    async def run(self, task) -> None:
        if not task.parameters or not task.parameters[0]:
            await task.reject_call(404, "No destination")
            return
        destination, flags = task.parameters[0], {flag.lower() for flag in task.parameters[1:]}
        unknown = flags - {"bridge", "media", "mixer", ""}
        if unknown:
            log.warn("gatewayincoming: unknown parameters {flags} ignored", flags=sorted(unknown))
        if "mixer" in flags:
            await _mixed(task, destination)
            return
        if not flags & {"bridge", "media", "mixer"}:
            await task.redirect_call(destination)
            return
        task.set_status(f"calling {destination}")
        caller = _uri_of(task.remote_uri()) or ""
        mode = BridgeMode.SIMPLE if flags & {"media", "mixer"} else BridgeMode.TRANSPARENT
        try:
            await bridge_out(task, destination, (caller,), mode)
        except CallError as error:
            await _refuse_for_destination(task, error)
            return
        task.set_status(f"connected to {destination}")
        await _until_either_hangs_up(task)
