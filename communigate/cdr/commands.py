"""
CLI for call records: C{LISTCALLRECORDS} [D] (CommuniGate keeps its
call logs per account as files; one searchable list serves operators
better).
"""

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified


class CallRecordCommands:
    def __init__(self, records, directory) -> None:
        self._records = records
        self._directory = directory

    def command_LISTCALLRECORDS(self, context, arguments):
        """LISTCALLRECORDS [{Account = name; Limit = n;}]"""
        criteria = arguments.optional_dictionary("search") or {}
        arguments.end()
        unknown = set(criteria) - {"Account", "Limit"}
        if unknown:
            raise CommandError(f"unknown search keys {sorted(unknown)}; use Account and Limit")
        try:
            limit = int(criteria.get("Limit", 100))
        except (TypeError, ValueError):
            raise CommandError("Limit must be a number") from None
        if not 1 <= limit <= 10_000:
            raise CommandError("Limit must be 1 to 10000")
        account = criteria.get("Account")
        if account is not None:
            account = self._directory.account_name(qualified(context, account))
        return [record.as_data() for record in self._records.recent(account=account, limit=limit)]
