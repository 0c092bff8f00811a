"""
Presence and rosters, shared by every protocol: one roster per account
(L{communigate.presence.roster}), one aggregated presence per account fed
by every source the account has (L{communigate.presence.service}), and
message-waiting counts (L{communigate.presence.mwi}).
"""
