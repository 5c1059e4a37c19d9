"""Exception classes in the spirit of `tf.errors`.

Each is also a subclass of the builtin a Python user would reach for first, so
`except ValueError` catches a bad feed just as `except gf.errors.InvalidArgumentError` does.
"""
from __future__ import annotations


class GraphflowError(Exception):
    """Base of every error graphflow raises on purpose."""


class OpError(GraphflowError):
    """An error tied to one operation (TF1's `tf.errors.OpError`)."""

    def __init__(self, message: str, op_name: str | None = None):
        super().__init__(message)
        self.message = message
        self.op_name = op_name

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(OpError, ValueError):
    """A fed value or an argument is not acceptable (wrong shape, missing feed, ...)."""


class FailedPreconditionError(OpError, RuntimeError):
    """The session is not in a state to run this (uninitialized variable, closed session)."""


class NotFoundError(OpError, KeyError):
    """A named tensor, operation, variable or file does not exist.

    A KeyError (hence a LookupError), as TF1's graph lookups raise KeyError for unknown names."""


class AlreadyExistsError(OpError, FileExistsError):
    """Something to be created exists already."""


class OutOfRangeError(OpError, IndexError):
    """An index or iteration went past its end."""


class UnimplementedError(OpError, NotImplementedError):
    """The operation is not supported for these arguments."""


class InternalError(OpError, RuntimeError):
    """A graphflow invariant broke: a bug, please report it."""


class ResourceExhaustedError(OpError, MemoryError):
    """Memory or another resource ran out."""


class DataLossError(OpError, OSError):
    """A file is truncated or corrupted."""


class CancelledError(OpError, RuntimeError):
    """The run was cancelled (for example, the session was closed)."""
