"""
A call record sink plugin: every finished call leg, one CSV line each, in
a file a billing job can pick up.

Install it by copying this file into a C{communigate/plugins/} directory
on the Python path (for example your own package's
C{communigate/plugins/}); C{twistd communigate} finds it at start.  The
file is C{COMMUNIGATE_CDR_CSV} from the environment, C{calls.csv} in the
working directory otherwise.

The last four columns are the media quality of a leg whose media the
server terminated (a PBX task's call), from RTCP: the loss of the peer's
packets to us and of ours to the peer, the jitter of the peer's stream and
the round-trip time; empty for legs the server only signalled.
"""

import csv
import os

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallRecordSink

FIELDS = ("Started", "Answered", "Ended", "Duration", "From", "To", "Account", "Status", "Cause", "Call-ID",
          "Loss", "PeerLoss", "Jitter", "RTT")


@implementer(IPlugin, ICallRecordSink)
class CSVCallRecords:
    """
    Appends each record; the file is opened per record, so it can be
    rotated under the running server.
    """

    def __init__(self, path=None) -> None:
        self.path = path or os.environ.get("COMMUNIGATE_CDR_CSV", "calls.csv")

    def call_finished(self, record):
        data = record.as_data()
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(FIELDS)
            writer.writerow([data.get(field, "") for field in FIELDS])


csv_call_records = CSVCallRecords()
