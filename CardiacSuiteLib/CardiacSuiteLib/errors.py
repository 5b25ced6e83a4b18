"""Errors that reach the user as one clear line: what is wrong, and what to do about it."""


class CardiacSuiteError(Exception):
    """Base of every error CardiacSuite reports to a user rather than as a traceback."""


class InputError(CardiacSuiteError):
    """The input (a file, a folder, a series, an option) cannot be used as given."""


class ModelError(CardiacSuiteError):
    """A model is unknown, missing, corrupt (checksum) or cannot run on the chosen device."""


class Cancelled(CardiacSuiteError):
    """The user cancelled a long operation; nothing was added to the scene."""
