"""Exception classes in the spirit of `tf.errors`.

Each is also a subclass of the builtin a Python user would reach for first, so
`except ValueError` catches a bad feed just as `except gf.errors.InvalidArgumentError` does.
"""
from __future__ import annotations


class GraphflowError(Exception):
    """Base of every error graphflow raises on purpose."""


class OpError(GraphflowError):
    """An error tied to one operation (TF1's `tf.errors.OpError`).

    Built as `OpError(message, op_name=None)`, or TF1-style as
    `OpError(node_def, op, message[, error_code])`; `.message`, `.op_name` and `.op` hold them.
    """

    def __init__(self, *args, op_name: str | None = None):
        op = None
        if len(args) >= 3:  # TF1's (node_def, op, message, ...)
            op, message = args[1], args[2]
            op_name = getattr(op, "name", op) if op is not None else op_name
        else:
            message = args[0] if args else ""
            if len(args) == 2:
                op_name = args[1]
        message = str(message)
        super().__init__(message)
        self.message = message
        self.op_name = op_name
        self.op = op

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable for multiprocessing, despite the custom __init__
        return (type(self), (self.message, self.op_name))


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


class UnknownError(OpError, RuntimeError):
    """An error with no better category."""


class DeadlineExceededError(OpError, TimeoutError):
    """An operation ran past its deadline."""


class PermissionDeniedError(OpError, PermissionError):
    """The caller may not do this (for example, write to a checkpoint directory)."""


class UnauthenticatedError(OpError, PermissionError):
    """The request has no valid credentials."""


class AbortedError(OpError, RuntimeError):
    """The operation was aborted, typically by a concurrent conflicting one."""


class UnavailableError(OpError, RuntimeError):
    """A resource is temporarily unavailable."""
