"""Exceptions shared by every part of FaceEdit.

Each carries a message meant for a person: it names the field, file or limit at fault.
"""


class FaceEditError(Exception):
    """Base class of FaceEdit's own errors."""


class InputError(FaceEditError, ValueError):
    """Bad input: a field with the wrong shape, dtype, range or value."""


class MissingModelError(FaceEditError, FileNotFoundError):
    """A model file the user must supply is absent; the message says what and where."""


class UnsafeFileError(FaceEditError):
    """A file asked to run code or to build an object that is not allowed."""


class PromptNotUnderstood(InputError):
    """A text prompt that names no facial action; carries the closest known expressions."""

    def __init__(self, message: str, suggestions: list[str] | None = None):
        super().__init__(message)
        self.suggestions = list(suggestions or [])


class Cancelled(FaceEditError):
    """A long job was cancelled between two steps."""
