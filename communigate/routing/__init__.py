"""
Addresses, the Router table, telephone numbers, E.164 and ENUM: how any
address becomes the place a Signal, a message or a login goes.
"""
