"""
XMPP: the client-to-server front end (RFC 6120) and what later grows on it
(roster, presence, messages, server-to-server, the Signal bridge).

  - L{parser}: the sans-IO XML stream parser (restricted XML, size limits);
  - L{scram} and L{sasl}: the server side of SASL (SCRAM-SHA-1/-256, PLAIN);
  - L{sessions}: the registry of bound resources, the seam later slices use;
  - L{dispatch}: the stanza dispatch table handlers register into;
  - L{ping}, L{version}, L{disco}: XEP-0199, XEP-0092, XEP-0030;
  - L{c2s}: the stream negotiation of one client connection;
  - L{service}: the C{--xmpp} service; L{settings}, L{commands}, L{metrics};
  - L{stanza_routes}: routing, bounces and the minimal local delivery;
  - server-to-server (C{--xmpp-s2s}): L{dialback} (XEP-0220 and XEP-0185),
    L{s2s} (what both stream directions share), L{s2s_in}, L{s2s_out},
    L{s2s_link}, L{s2s_dns}, L{s2s_service}, L{s2s_commands},
    L{s2s_metrics}.
"""
