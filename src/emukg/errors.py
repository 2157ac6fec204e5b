"""One exception type for every error a user can fix.

An :class:`EmukgError` carries one sentence that names the file, line or flag at fault and says how to fix
it.  The command line prints that sentence (no traceback) and exits with status 2.
"""


class EmukgError(Exception):
    """A user-facing error: bad input, a bad flag, a missing file. Exit status 2 from the CLI."""

    exit_code = 2
