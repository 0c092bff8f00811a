"""
A Signal hook plugin: policy on every Signal without patching the core.

This one refuses INVITEs whose From is on a deny list and logs every
final response.  Install it by copying this file into a C{communigate/plugins/}
directory on the Python path (for example your own package's
C{communigate/plugins/}); C{twistd communigate} finds it at start.
"""

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ISignalHook
from communigate.signal.model import response


@implementer(IPlugin, ISignalHook)
class DenyCallers:
    """
    Answers 403 to INVITEs from denied callers; logs every outcome.
    """

    log = Logger()

    def __init__(self, denied=("spam@example.net",)) -> None:
        self.denied = {address.lower() for address in denied}

    def submitted(self, signal):
        if signal.method == "INVITE" and signal.from_address.lower() in self.denied:
            return response(403, "Caller denied by policy")
        return None

    def routed(self, signal, routes):
        return None

    def responded(self, signal, final):
        self.log.info(
            "{method} {call_id} from {caller} ended {code}",
            method=signal.method,
            call_id=signal.call_id,
            caller=signal.from_address,
            code=final.code,
        )


deny_callers = DenyCallers()
