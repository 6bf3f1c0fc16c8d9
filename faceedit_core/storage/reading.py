"""Reading files from outside: every failure a reader does not raise itself becomes FaceEdit's own.

Torch-free, so the OBJ and glTF readers can use it without importing torch.
"""

from __future__ import annotations

from faceedit_core.errors import FaceEditError, InputError


def reading_errors(what: str):
    """A context manager turning any failure but FaceEdit's own into InputError naming `what`
    (a KeyError of a missing field, a UnicodeDecodeError, a RecursionError, ...)."""
    return _ReadingErrors(what)


class _ReadingErrors:
    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, FaceEditError) or not isinstance(exc, Exception):
            return False
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise InputError(f"{self.what} is not a readable model file ({type(exc).__name__}: {message})") from None
