"""
Who may run CLI commands.

[D] CommuniGate grants CLI rights per account ("Master" and finer rights).
Until the rights model arrives, the server administrators are the main
domain's postmaster and every account whose effective setting
C{ServerAdministrator} is C{YES}; the admin tool on the data directory is
trusted outright.
"""

from communigate.directory.errors import DirectoryError
from communigate.directory.settings import is_yes


def administrator_check(directory):
    """
    A predicate on command contexts for L{Interpreter}.
    """

    def is_administrator(context) -> bool:
        if context.trusted:
            return True
        if context.account == f"postmaster@{directory.main_domain()}":
            return True
        try:
            found = directory.account_effective_settings(context.account)
        except DirectoryError:
            return False
        return is_yes(found.get("ServerAdministrator"))

    return is_administrator
