"""Errors a user can cause. The CLI turns each into one line and exit status 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave us (study file, option, missing data).

    Its message is one line that names the file and/or field and what is allowed.
    """


class ConfigError(UserError):
    """A study or run file (or a ``--set`` value) is not valid."""


class DataMissingError(UserError):
    """A dataset's files are not on disk and cannot be downloaded."""


class FieldError(ValueError):
    """Raised inside validators to point at a sub-field (``path`` relative to the validated
    object), so the formatted message names the full dotted path."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message
