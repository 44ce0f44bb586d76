"""Errors a user can cause and fix themselves (bad folder, bad file, bad flag)."""


class UserError(Exception):
    """One clear sentence: what is wrong, where (file, flag), and what to do.

    The CLI prints these without a traceback; Dagster shows them as the step's failure message.
    """


def describe(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception caught from a library, short enough to
    sit inside a one-sentence UserError (library messages often run to many lines)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
