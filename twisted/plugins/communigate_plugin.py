from twisted.application.service import ServiceMaker

communigate = ServiceMaker(
    "communigate",
    "communigate.tap",
    "SIP, XMPP, XIMSS and PBX server with a CommuniGate-style directory and CLI",
    "communigate",
)
