"""The one domain exception type of medaudit, and its warning category.

Every expected failure (bad input, missing file, mismatched models) raises
:class:`MedauditError`; the CLI turns it into a one-line message and exit code 2. Library
messages name the file or value at fault; a message about a parameter passes ``param=`` (the
Python parameter name) and the CLI prefixes the option that set it (``names`` → ``--names``),
so option spellings live in the CLI layer only.

Problems that do not stop a run are :class:`MedauditWarning` s sent through :mod:`warnings`;
the CLI shows them as ``Warning: ...`` lines, a library caller filters or records them as usual.
"""

from __future__ import annotations


class MedauditError(Exception):
    """A user-facing error: the message names the file/value at fault and what to do.

    Parameters
    ----------
    message : str
    param : str, optional
        The library parameter the message is about; the CLI shows the option that maps to it.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class MedauditWarning(UserWarning):
    """A problem worth telling the user about that does not stop the run."""
