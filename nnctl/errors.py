"""Errors a user can cause, each carrying the exit code the CLI ends with.

The CLI prints `str(error)` on one line and exits with `exit_code`; anything that is not an
`NnctlError` is a bug in nnctl and keeps its traceback.
"""


class NnctlError(Exception):
    """A failure the user can act on: the message names the file, key or shape at fault."""

    exit_code = 1


class UsageError(NnctlError):
    """Bad input from the user: a config, a weights file, an image, an option."""

    exit_code = 2


class ConfigError(UsageError):
    """A config that does not validate; the message starts with the key path."""


class DataError(NnctlError):
    """A data file that is missing, corrupt, or not what its name says."""


class DownloadError(DataError):
    """No mirror delivered a verified file."""
