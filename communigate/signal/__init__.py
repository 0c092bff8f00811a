"""
Signals: the one model of a real-time request, and the service that
routes, applies Signal Rules, forks and answers them.

  - L{communigate.signal.model}: the Signal, its responses and states;
  - L{communigate.signal.service}: L{SignalService <communigate.signal.service.SignalService>},
    what every protocol submits Signals to;
  - L{communigate.signal.forking}: the tree a Signal forks into;
  - L{communigate.signal.ranking}: the best final response of a fork;
  - L{communigate.signal.memory}: in-memory endpoints and routes, for tests.
"""
