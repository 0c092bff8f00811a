"""
The PSTN gateway applications (C{gatewaycaller}, C{gatewayincoming}) as
L{ICallApplication} plugins.
"""

from communigate.pbx.gateway import GatewayCaller, GatewayIncoming

gatewaycaller = GatewayCaller()
gatewayincoming = GatewayIncoming()
