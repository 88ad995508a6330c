"""User-facing errors.

Anything a user can cause (a missing file, a malformed input, a bad flag value) raises
:class:`StdgenError` with a message that names the thing and the problem. The CLI prints it
without a traceback and exits non-zero; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StdgenError(Exception):
    """An error caused by the user's input, with a message meant for them."""


class InputError(StdgenError):
    """A malformed or missing input file or directory."""
