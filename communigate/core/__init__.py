"""
The reactor-driven scheduler every state machine runs on: PBX tasks, the
mixer's tick, NAT pingers.
"""
