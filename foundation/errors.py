"""The one base class of the errors a user can act on.

A :class:`UserError` is caused by the inputs, the settings or the machine (a missing file, a
busy stage, a count the data cannot supply), not by a bug. Its message is complete on its own:
what is wrong, naming the file or store, and what to do. The command line prints it as one
line, ``error: <message>``, without a traceback; any other exception is a bug.

Each concrete error also derives from the builtin it refines (``FileNotFoundError``,
``ValueError``...), so callers that catch those keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message names the file and says what to do."""


class SettingsError(UserError, ValueError):
    """Settings that cannot work with this data: an image size other than the store's, an
    augmentation factor the identities cannot supply."""
