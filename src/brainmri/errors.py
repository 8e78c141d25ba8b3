"""Exceptions raised by brainmri.

Every error a user can cause derives from :class:`BrainMRIError`. Its message
is one line that names the file or parameter, what was received and how to
fix it; the CLI prints it without a traceback (unless ``--debug``).
"""

from __future__ import annotations


class BrainMRIError(Exception):
    """Base class of every error that brainmri raises on purpose."""


class DataError(BrainMRIError):
    """An input file, folder or manifest cannot be used as given."""


class ConfigError(BrainMRIError, ValueError):
    """A parameter or option has a value that is not allowed."""
