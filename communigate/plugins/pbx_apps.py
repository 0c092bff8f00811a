"""
The stock PBX applications as L{ICallApplication} plugins.
"""

from communigate.pbx.apps import DTMFTest, Echo
from communigate.pbx.attendant import Attendant, BridgedCall
from communigate.pbx.callqueue import CallQueue, QueueAgent
from communigate.pbx.voicemail import VoiceMail

echo = Echo()
dtmftest = DTMFTest()
attendant = Attendant()
bridgedcall = BridgedCall()
voicemail = VoiceMail()
callqueue = CallQueue()
queueagent = QueueAgent()
