"""graphflow.errors: TF1's error classes, each also a subclass of the fitting builtin, and
the real failures raise them with the op or tensor named."""
import pickle

import numpy as np
import pytest

import graphflow as gf
from graphflow import errors

BUILTIN_OF = {
    "InvalidArgumentError": ValueError,
    "FailedPreconditionError": RuntimeError,
    "NotFoundError": KeyError,
    "AlreadyExistsError": FileExistsError,
    "OutOfRangeError": IndexError,
    "UnimplementedError": NotImplementedError,
    "InternalError": RuntimeError,
    "ResourceExhaustedError": MemoryError,
    "DataLossError": OSError,
    "CancelledError": RuntimeError,
    "UnknownError": RuntimeError,
    "DeadlineExceededError": TimeoutError,
    "PermissionDeniedError": PermissionError,
    "UnauthenticatedError": PermissionError,
    "AbortedError": RuntimeError,
    "UnavailableError": RuntimeError,
}


@pytest.mark.parametrize("name", sorted(BUILTIN_OF))
def test_every_error_is_an_op_error_and_the_fitting_builtin(name):
    cls = getattr(errors, name)
    assert issubclass(cls, errors.OpError) and issubclass(cls, errors.GraphflowError)
    assert issubclass(cls, BUILTIN_OF[name])
    e = cls("what went wrong", "some/op")
    assert str(e) == "what went wrong" and e.message == "what went wrong" and e.op_name == "some/op"
    tf_style = cls(None, None, "tf1 style")  # TF1's (node_def, op, message)
    assert str(tf_style) == "tf1 style" and tf_style.op_name is None
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is cls and str(copy) == "what went wrong" and copy.op_name == "some/op"
    with pytest.raises(BUILTIN_OF[name]):
        raise e


def test_every_public_error_class_is_covered():
    public = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.OpError)}
    assert public - {"OpError"} == set(BUILTIN_OF)


def test_real_failures_raise_the_documented_classes():
    x = gf.placeholder(gf.float32, (2,), name="x")
    v = gf.Variable([1.0, 2.0], name="v")
    out = gf.reshape(x * 1.0, (1, 2), name="out")
    with gf.Session(opt_level=0) as sess:
        with pytest.raises(ValueError, match="'x:0'"):  # InvalidArgumentError: wrong shape
            sess.run(out, {x: [1.0, 2.0, 3.0]})
        with pytest.raises(errors.InvalidArgumentError) as info:  # missing feed
            sess.run(out)
        assert info.value.op_name == "x"
        with pytest.raises(RuntimeError, match="'v'") as info:  # uninitialized variable
            sess.run(v)
        assert isinstance(info.value, errors.FailedPreconditionError)
        with pytest.raises(KeyError):
            sess.run("missing:0")
    with pytest.raises(errors.FailedPreconditionError, match="closed"):
        sess.run(v)


def test_a_failing_kernel_names_the_op_and_its_input_shapes():
    x = gf.placeholder(gf.float32, (None,), name="x")
    r = gf.reshape(x, (2, 2), name="to_square")
    with gf.Session(opt_level=0) as sess:
        with pytest.raises(errors.InvalidArgumentError) as info:
            sess.run(r, {x: np.zeros(3, np.float32)})
    msg = str(info.value)
    assert "to_square" in msg and "(3,)" in msg and "test_errors.py" in msg
    assert info.value.op_name == "to_square"
