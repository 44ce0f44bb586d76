"""Errors a user can cause and fix themselves (bad folder, bad file, bad flag)."""


class UserError(Exception):
    """One clear sentence: what is wrong, where (file, flag), and what to do.

    The CLI prints these without a traceback; Dagster shows them as the step's failure message.
    """
