"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A bad input (search space, config value, data file, path): one line, exit code 2.

    The message names the problem and, where it helps, what to do about it.
    """
