"""
Why a store could not be opened or used, in words an operator can act on.
"""


class StoreError(Exception):
    """
    The store cannot be opened or written; the message says why and what
    to do about it.  Nothing was changed.
    """
