"""gf.train.Saver: round trips, errors that name the variable and expected vs got, atomic
writes, damaged files reported as DataLossError, and no pickle anywhere in a checkpoint."""
import json
import os
import zipfile

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import DataLossError, InvalidArgumentError, NotFoundError


def _model():
    with gf.name_scope("dense"):
        w = gf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="kernel")
    b = gf.Variable(np.array([1.0, 2.0]), name="b")
    n = gf.Variable(np.array([3, 4], dtype=np.int64), name="count", trainable=False)
    return w, b, n


def test_round_trip_restores_every_value(tmp_path):
    w, b, n = _model()
    bump = gf.group(w.assign(w * 10.0), b.assign_add([5.0, 5.0]), n.assign_add(np.array([1, 1], np.int64)))
    saver = gf.train.Saver()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        sess.run(bump)
        saved = sess.run([w, b, n])
        path = saver.save(sess, str(tmp_path / "model.ckpt"))
        assert path == str(tmp_path / "model.ckpt")
    assert sorted(gf.train.list_variables(path)) == [("b", [2]), ("count", [2]), ("dense/kernel", [2, 3])]
    with gf.Session(opt_level=0) as sess:
        saver.restore(sess, path)
        restored = sess.run([w, b, n])
    for got, want in zip(restored, saved):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(gf.train.load_variable(path, "dense/kernel"), saved[0])


def test_restore_into_a_new_graph_and_by_dict_names(tmp_path):
    w, b, n = _model()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        path = gf.train.Saver({"weights": w}).save(sess, str(tmp_path / "ck"))
    g2 = gf.Graph()
    with g2.as_default():
        other = gf.Variable(np.zeros((2, 3), np.float32), name="renamed")
        with gf.Session(graph=g2, opt_level=0) as sess:
            gf.train.Saver({"weights": other}).restore(sess, path)
            np.testing.assert_array_equal(sess.run(other), np.arange(6).reshape(2, 3))


def test_global_step_max_to_keep_and_latest_checkpoint(tmp_path):
    w, b, n = _model()
    step = gf.train.get_or_create_global_step()
    inc = step.assign_add(1)
    saver = gf.train.Saver(max_to_keep=2)
    assert gf.train.latest_checkpoint(str(tmp_path)) is None
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        paths = []
        for _ in range(3):
            sess.run(inc)
            paths.append(saver.save(sess, str(tmp_path / "model"), global_step=step))
        assert paths == [str(tmp_path / f"model-{i}") for i in (1, 2, 3)]
        assert saver.last_checkpoints == paths[1:]
        assert gf.train.latest_checkpoint(str(tmp_path)) == paths[-1]
        assert not any(f.startswith("model-1.") for f in os.listdir(tmp_path))
        assert sum(f.endswith(".npz") for f in os.listdir(tmp_path)) == 2
        sess.run(inc)
        saver.restore(sess, str(tmp_path))  # a directory means its latest checkpoint
        assert sess.run(step) == 3
        saver.restore(sess, paths[1])
        assert sess.run(step) == 2
        with pytest.raises(NotFoundError, match="model-1"):
            saver.restore(sess, paths[0])


def test_saving_the_same_prefix_again_replaces_it_and_leaves_no_stray_files(tmp_path):
    w, b, n = _model()
    saver = gf.train.Saver([w])
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        saver.save(sess, str(tmp_path / "m"))
        sess.run(w.assign(w + 1.0))
        saver.save(sess, str(tmp_path / "m"))
        sess.run(w.assign(w * 0.0))
        saver.restore(sess, str(tmp_path / "m"))
        np.testing.assert_array_equal(sess.run(w), np.arange(6).reshape(2, 3) + 1)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 3 and "checkpoint" in files and "m.index.json" in files  # no temp files, no old data


def test_restore_names_missing_and_mismatched_variables(tmp_path):
    w, b, n = _model()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        path = gf.train.Saver([w, b]).save(sess, str(tmp_path / "ck"))
    g2 = gf.Graph()
    with g2.as_default():
        with gf.name_scope("dense"):
            w2 = gf.Variable(np.zeros((3, 2), np.float32), name="kernel")
        b2 = gf.Variable(np.zeros(2, np.float32), name="b")
        extra = gf.Variable(np.zeros(4), name="extra")
        with gf.Session(graph=g2, opt_level=0) as sess:
            sess.run(gf.global_variables_initializer())
            with pytest.raises(NotFoundError, match=r"'extra' \(expected \(4,\) float64\)") as info:
                gf.train.Saver([w2, b2, extra]).restore(sess, path)
            assert isinstance(info.value, LookupError)
            with pytest.raises(InvalidArgumentError) as info:
                gf.train.Saver([w2, b2]).restore(sess, path)
            msg = str(info.value)
            assert "'dense/kernel': expected shape (3, 2) float32, got shape (2, 3) float32" in msg
            assert "'b': expected shape (2,) float32, got shape (2,) float64" in msg
            # nothing was changed by the failed restores
            np.testing.assert_array_equal(sess.run(w2), np.zeros((3, 2), np.float32))


def test_missing_and_corrupted_files_give_clear_errors(tmp_path):
    w, b, n = _model()
    saver = gf.train.Saver()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        with pytest.raises(NotFoundError, match="nothing_here"):
            saver.restore(sess, str(tmp_path / "nothing_here"))
        with pytest.raises(ValueError, match="None"):
            saver.restore(sess, gf.train.latest_checkpoint(str(tmp_path)))
        path = saver.save(sess, str(tmp_path / "ck"))
        data = next(tmp_path.glob("ck.data-*.npz"))
        good = data.read_bytes()
        data.write_bytes(good[: len(good) // 2])  # truncated
        with pytest.raises(DataLossError, match="corrupted or truncated"):
            saver.restore(sess, path)
        data.write_bytes(good)
        saver.restore(sess, path)
        data.unlink()
        with pytest.raises(DataLossError, match="cannot be read"):
            saver.restore(sess, path)
        (tmp_path / "ck.index.json").write_text("{not json")
        with pytest.raises(DataLossError, match="not valid JSON"):
            saver.restore(sess, path)
        assert issubclass(DataLossError, OSError)


def test_save_of_an_uninitialized_variable_names_it(tmp_path):
    w, b, n = _model()
    with gf.Session(opt_level=0) as sess:
        with pytest.raises(gf.errors.FailedPreconditionError, match="kernel"):
            gf.train.Saver().save(sess, str(tmp_path / "x"))
    assert not list(tmp_path.glob("*.index.json"))


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    w, b, n = _model()
    saver = gf.train.Saver()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        path = saver.save(sess, str(tmp_path / "ck"))
        sess.run(w.assign(w - 100.0))
        real_replace = os.replace

        def crash_on_index(src, dst):
            if str(dst).endswith(".index.json"):
                raise KeyboardInterrupt("simulated crash while saving")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", crash_on_index)
        with pytest.raises(KeyboardInterrupt):
            saver.save(sess, path)
        monkeypatch.setattr(os, "replace", real_replace)
        saver.restore(sess, path)  # the old checkpoint is intact and consistent
        np.testing.assert_array_equal(sess.run(w), np.arange(6).reshape(2, 3))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


PICKLE_PROTOCOL_MARKERS = [bytes([0x80, p]) for p in range(2, 6)]


def test_checkpoint_directory_contains_no_pickle(tmp_path):
    w, b, n = _model()
    saver = gf.train.Saver()
    with gf.Session(opt_level=0) as sess:
        sess.run(gf.global_variables_initializer())
        saver.save(sess, str(tmp_path / "model"), global_step=7)
    files = sorted(tmp_path.iterdir())
    assert files
    for f in files:
        raw = f.read_bytes()
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as npz:
                for key in npz.files:
                    assert npz[key].dtype != object
            with zipfile.ZipFile(f) as z:
                for member in z.namelist():
                    body = z.read(member)
                    assert body.startswith(b"\x93NUMPY"), member
                    assert not any(body.startswith(m) for m in PICKLE_PROTOCOL_MARKERS)
        else:
            json.loads(raw.decode("utf-8"))  # every other file is JSON text
        assert not any(raw.startswith(m) for m in PICKLE_PROTOCOL_MARKERS), f.name
        assert b"cnumpy" not in raw and b"numpy.core.multiarray" not in raw
