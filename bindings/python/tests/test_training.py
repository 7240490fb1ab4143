"""The C trainer and the C data readers through the binding: the whole surface reaches the
library; reader results agree with numpy's own writer; errors name the cell."""
import math
import os

import numpy as np
import pytest

import stochflow as sf


def data(n=200, seed=1):
    return sf.toy_sample("moons", n, seed=seed)


def small_model(seed=2):
    return sf.Model(2, hidden=(16, 16), seed=seed, threads=1, lr=3e-3)


def test_trainer_fit_stats_and_callback():
    m = small_model()
    seen = []
    tr = sf.Trainer(batch_size=50, max_steps=40, eval_every=10, val_fraction=0.25,
                    solver="rk4", steps=4)
    tr.fit(m, data(), progress=lambda s, loss, v, se: seen.append((s, v, se)))
    st = tr.stats
    assert st["steps"] == 40 and st["stop"] == "steps" and st["evals"] == 4
    assert st["train_rows"] == 150 and st["val_rows"] == 50
    assert [s for s, _, _ in seen] == list(range(1, 41))
    evals = [(s, v) for s, v, _ in seen if not math.isnan(v)]
    assert [s for s, _ in evals] == [10, 20, 30, 40]
    assert st["best_nll"] == min(v for _, v in evals)
    assert math.isfinite(st["final_nll"]) and st["final_se"] > 0
    assert m.step == 40
    assert m.get_param("lr_total_steps") == 40  # the schedule spans the budget


def test_trainer_same_bits_resume_and_threads():
    x = data()

    def run(model, steps, cancel_at=None):
        tr = sf.Trainer(batch_size=32, max_steps=steps, solver="rk4", steps=4)
        cb = (lambda s, *_: s == cancel_at) if cancel_at else None
        if cancel_at:
            with pytest.raises(sf.CancelledError):
                tr.fit(model, x, progress=cb)
        else:
            tr.fit(model, x)
        return model

    a = run(small_model(), 25)
    b = run(sf.Model(2, hidden=(16, 16), seed=2, threads=2, lr=3e-3), 25)
    c = run(small_model(), 25, cancel_at=9)
    assert c.step == 9
    c = run(sf.Model.from_bytes(c.to_bytes()), 25)
    assert np.array_equal(a.parameters(), b.parameters())
    assert np.array_equal(a.parameters(), c.parameters())


def test_trainer_state_resumes_early_stopping():
    x, xv = data(), data(40, seed=5)

    def trainer():
        return sf.Trainer(batch_size=16, max_steps=400, eval_every=3, patience=4,
                          val_subset=16, solver="rk4", steps=4)

    def model():
        return sf.Model(2, hidden=(16, 16), seed=2, threads=1, lr=3e-2)
    a, ta = model(), trainer()
    ta.fit(a, x, xv)
    assert ta.stats["stop"] == "patience" and a.step > 20
    c, tc = model(), trainer()
    with pytest.raises(sf.CancelledError):
        tc.fit(c, x, xv, progress=lambda s, *_: s == 17)
    blob, state = c.to_bytes(), tc.state_bytes()
    # resumed with the state: same stop, same best weights
    c1, t1 = sf.Model.from_bytes(blob), trainer()
    t1.load_state(state)
    t1.fit(c1, x, xv)
    assert c1.step == a.step and t1.stats["best_step"] == ta.stats["best_step"]
    assert np.array_equal(c1.parameters(), a.parameters())
    # resumed without it: patience restarts, the run differs
    c2, t2 = sf.Model.from_bytes(blob), trainer()
    t2.fit(c2, x, xv)
    assert c2.step != a.step or not np.array_equal(c2.parameters(), a.parameters())
    with pytest.raises(sf.FormatError):
        t2.load_state(state[:-1])


def test_trainer_callback_exception_propagates_and_errors():
    m = small_model()
    tr = sf.Trainer(batch_size=32, max_steps=10, solver="rk4", steps=4)

    def boom(*_):
        raise RuntimeError("from the callback")
    with pytest.raises(RuntimeError, match="from the callback"):
        tr.fit(m, data(), progress=boom)
    assert m.step == 1
    with pytest.raises(sf.InvalidArgumentError):
        tr.set_param("batch_size", 1.5)
    with pytest.raises(TypeError):
        tr.set_param("no_such_param", 1)
    bad = data()
    bad[3, 1] = np.nan
    with pytest.raises(sf.NonFiniteError, match="row 4, column 2"):
        tr.fit(m, bad)
    assert tr.get_param("max_steps") == 10
    tr.set_param("solver_max_steps", 500)
    assert tr.get_param("solver_max_steps") == 500


@pytest.mark.parametrize("dtype", ["<f4", "<f8", ">f8", "<i4", "|u1", "<i8", "<u2"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_reader_matches_numpy(tmp_path, dtype, order):
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(7, 3)) * 50).astype(dtype)
    a = np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a)
    path = tmp_path / "a.npy"
    np.save(path, a)
    got = sf.read_npy(path)
    assert got.dtype == np.float32 and got.shape == (7, 3)
    assert np.array_equal(got, a.astype(np.float32))
    assert np.array_equal(sf.parse_npy(path.read_bytes()), got)


def test_npy_reader_1d_and_errors(tmp_path):
    p = tmp_path / "v.npy"
    np.save(p, np.arange(5, dtype=np.float32))
    assert sf.read_npy(p).shape == (5, 1)
    np.save(p, np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(sf.FormatError, match="3-dimensional"):
        sf.read_npy(p)
    np.save(p, np.array([[1.0, np.inf]], dtype=np.float32))
    with pytest.raises(sf.NonFiniteError, match="row 1, column 2"):
        sf.read_npy(p)
    np.save(p, np.zeros((3, 2), dtype=np.complex64))
    with pytest.raises(sf.FormatError, match="dtype"):
        sf.read_npy(p)
    with pytest.raises(sf.FormatError, match="limit"):
        sf.read_npy("/dev/zero", max_bytes=1 << 16)


def test_csv_reader_pandas_output(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x one": [0.5, -1.25, 3e-3], "y": [1, 2, 3]})
    p = tmp_path / "d.csv"
    df.to_csv(p)                      # with pandas' index column (empty header name)
    got = sf.read_csv(p)
    assert got.shape == (3, 3)
    assert np.array_equal(got[:, 1:], df.to_numpy(dtype=np.float32))
    df.to_csv(p, index=False, lineterminator="\r\n", encoding="utf-8-sig")  # BOM + CRLF
    assert np.array_equal(sf.read_csv(p), df.to_numpy(dtype=np.float32))
    df.iloc[1, 1] = None
    df.to_csv(p, index=False)         # the missing value is an empty cell
    with pytest.raises(sf.FormatError, match="row 3, column 2: empty cell"):
        sf.read_csv(p)


def test_csv_reader_strictness():
    with pytest.raises(sf.FormatError, match=r"row 1, column 2: 'y' is not a number"):
        sf.parse_csv("1,y\n2,3\n")
    with pytest.raises(sf.FormatError, match="row 2, column 1: '1,5' has a decimal comma"):
        sf.parse_csv("a;b\n1,5;2\n")
    with pytest.raises(sf.FormatError, match="row 2, column 2: 'NA'"):
        sf.parse_csv("1,2\n3,NA\n")
    assert sf.parse_csv("1,2\r3,4").shape == (2, 2)
