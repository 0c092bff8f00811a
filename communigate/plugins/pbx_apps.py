"""
The stock PBX applications as L{ICallApplication} plugins.
"""

from communigate.pbx.apps import DTMFTest, Echo

echo = Echo()
dtmftest = DTMFTest()
