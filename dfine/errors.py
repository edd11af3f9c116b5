"""User-facing errors."""


class DfineError(Exception):
    """A user-facing error: its message is one line that says what is wrong and what to do."""
