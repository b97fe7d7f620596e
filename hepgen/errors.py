"""Errors a user can fix: bad files, bad options, bad arrays.

Every user-facing failure raises :class:`HepgenError` (or a subclass) with one line
that names the file or option at fault. The CLI turns it into a single line on
stderr and a non-zero exit; library users catch it like any exception.
"""

from __future__ import annotations


class HepgenError(Exception):
    """A problem with the user's input, reported as one clear line."""


class InputFileError(HepgenError):
    """A file that is missing, unreadable or not in the expected layout."""


class InvalidDataError(HepgenError):
    """Arrays with the wrong shape, NaN/inf values or an empty sample."""


class OptionError(HepgenError):
    """An option value that is unknown or out of range."""
