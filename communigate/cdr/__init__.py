"""
Call detail records (L{records.CallRecords}) and their CLI.
"""
