"""
The PBX: real-time applications (CG/PL tasks as Python coroutines), their
calls and their media channels.

  - L{communigate.pbx.task}: L{Task}, the API an application programs
    against (the CG/PL call-control, media and event verbs);
  - L{communigate.pbx.call}, L{communigate.pbx.leg}: one call's
    signalling (a user agent's dialog in SIP terms);
  - L{communigate.pbx.channel}: the task's RTP endpoint, ticking on the
    core scheduler; L{communigate.pbx.prompts}: what it plays;
  - L{communigate.pbx.dialogs}: the dialogs the server holds as a user
    agent, shared with the protocols that carry them;
  - L{communigate.pbx.service}: running tasks, installed applications,
    the C{PBX} route handler; L{communigate.pbx.commands}: the CLI;
  - L{communigate.pbx.apps}: the stock C{echo} and C{dtmftest}.

See C{docs/pbx.md}.
"""
