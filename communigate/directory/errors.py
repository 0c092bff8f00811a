"""
Refusals of the directory, each with a message fit to show an operator.

A method that raises one of these has changed nothing.
"""


class DirectoryError(Exception):
    """
    A directory request was refused; C{str(error)} says why.
    """


class InvalidName(DirectoryError):
    """
    A domain, account, alias or telephone number is not well formed.
    """


class InvalidSettings(DirectoryError):
    """
    A settings dictionary or one of its values is not acceptable.
    """


class UnknownObject(DirectoryError):
    """
    The named domain, account, forwarder or group does not exist.
    """


class NameInUse(DirectoryError):
    """
    The name is already taken by another object, or the telephone number
    by another account.
    """


class ObjectInUse(DirectoryError):
    """
    The object cannot be removed while other objects depend on it.
    """
