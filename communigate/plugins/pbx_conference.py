"""
The stock C{conference} PBX application as an L{ICallApplication} plugin.
"""

from communigate.pbx.conference import Conference

conference = Conference()
