"""
SIP (RFC 3261 and friends): messages, transports, transactions, the
registrar, digest authentication, NAT traversal, and the server and client
objects that turn SIP requests into Signals and Signals into SIP requests.
"""
