"""The error type for a user's mistake: the CLI prints its message on one line and exits non-zero."""


class UsageError(ValueError):
    """Bad input from the user (unknown id or sampler, malformed file, nonsensical number, ...)."""
