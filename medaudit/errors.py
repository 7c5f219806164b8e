"""The one domain exception type of medaudit.

Every expected failure (bad input, missing file, mismatched models) raises
:class:`MedauditError`; the CLI turns it into a one-line message and exit code 2.
"""


class MedauditError(Exception):
    """A user-facing error: the message names the file/option and what to do."""


class MedauditWarning(UserWarning):
    """A problem worth telling the user about that does not stop the run."""
