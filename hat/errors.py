"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class HatError(Exception):
    """An error caused by the user's input (files, flags, configs), with a fix in its message."""
