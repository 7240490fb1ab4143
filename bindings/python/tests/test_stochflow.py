"""Tests of the Python binding's own behaviour: conversions, errors, ownership, the whole
surface reaching the C library. The numerics themselves are tested by the C suites."""
import gc
import os
import pickle
import re
import subprocess
import sys
import weakref

import numpy as np
import pytest

import stochflow as sf

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")


def small(**kw):
    args = dict(hidden=(16, 16), seed=3, threads=1)
    args.update(kw)
    return sf.Model(2, **args)


def batch(n=32, stream=0):
    return sf.toy_sample("moons", n, seed=1, stream=stream)


# ---- version and loading --------------------------------------------------------------


def test_version_matches_project():
    text = open(os.path.join(ROOT, "meson.build")).read()
    want = re.search(r"version:\s*'([0-9.]+)'", text).group(1)
    assert sf.__version__ == want
    major, minor, patch = (int(v) for v in want.split("."))
    assert sf.version_number == major * 10000 + minor * 100 + patch


def test_library_from_env():
    assert os.path.samefile(sf.library_path, os.environ["STOCHFLOW_LIBRARY"])


def test_missing_library_is_import_error():
    env = dict(os.environ, STOCHFLOW_LIBRARY="/nonexistent/libstochflow.so.1")
    r = subprocess.run([sys.executable, "-c", "import stochflow"], env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "STOCHFLOW_LIBRARY" in r.stderr


def test_lookup_order(monkeypatch):
    assert sf._capi._candidates() == [("$STOCHFLOW_LIBRARY", os.environ["STOCHFLOW_LIBRARY"])]
    monkeypatch.delenv("STOCHFLOW_LIBRARY")
    order = [how for how, _ in sf._capi._candidates()]
    # source checkout: <repo>/build/lib first, then the system loader
    assert order[0] == "build tree" and order[-1] == "system loader", order


def test_constants_exported():
    assert sf.STOCHFLOW_E_INVALID == -1
    assert sf.STOCHFLOW_PARAM_LR == 100


# ---- errors -----------------------------------------------------------------------------


def test_error_subclass_per_status():
    statuses = set()
    for code in range(-1, -12, -1):
        cls = sf._ERRORS[code]
        assert issubclass(cls, sf.Error) and cls.status == code
        statuses.add(cls)
        assert sf.status_string(code) != "unknown status"
    assert len(statuses) == 11


def test_invalid_argument_carries_status_and_message():
    with pytest.raises(sf.InvalidArgumentError) as e:
        sf.Model(0)
    assert e.value.status == sf.STOCHFLOW_E_INVALID
    assert e.value.message  # the library's detail text
    assert "stochflow_config_new" in str(e.value)


def test_param_out_of_range():
    m = small()
    with pytest.raises(sf.InvalidArgumentError, match="lr"):
        m.set_param("lr", -1.0)


def test_io_and_format_errors(tmp_path):
    with pytest.raises(sf.IOFailureError) as e:
        sf.Model.load(str(tmp_path / "missing.sfm"))
    assert e.value.status == sf.STOCHFLOW_E_IO
    with pytest.raises(sf.Error) as e:
        sf.Model.from_bytes(b"definitely not a checkpoint")
    assert e.value.status in (sf.STOCHFLOW_E_FORMAT, sf.STOCHFLOW_E_VERSION)
    assert isinstance(e.value, (sf.FormatError, sf.VersionError))


def test_unsupported_toy():
    with pytest.raises(sf.UnsupportedError):
        sf.toy_log_density("moons", np.zeros((2, 2), np.float32))
    with pytest.raises(sf.InvalidArgumentError):
        sf.toy_sample("no-such-toy", 4)


def test_nonfinite_input():
    m = small()
    x = batch()
    x[3, 1] = np.nan
    before = m.parameters().copy()
    with pytest.raises(sf.NonFiniteError):
        m.train_step(x)
    assert m.step == 0
    np.testing.assert_array_equal(m.parameters(), before)


def test_nonfinite_input_names_row_and_column():
    m = small()
    x = batch()
    x[3, 1] = np.nan
    with pytest.raises(sf.NonFiniteError, match=r"x1: NaN value at row 4, column 2"):
        m.train_step(x)
    x[3, 1] = 0.0
    x[0, 0] = np.inf
    with pytest.raises(sf.NonFiniteError, match=r"infinite value at row 1, column 1"):
        m.velocity(0.5, x)


def test_parameter_table_comes_from_the_library():
    names = sf.param_names()
    assert len(names) == len(set(names)) >= 30
    assert set(sf.MODEL_PARAMS) | set(sf.SOLVER_PARAMS) == set(names)
    assert not set(sf.MODEL_PARAMS) & set(sf.SOLVER_PARAMS)
    for name in names:
        key = sf.param_key(name)
        assert sf.param_name(key) == name
        lo, hi, de = sf.param_bounds(name)
        assert (lo, hi, de) == sf.param_bounds(key)
        assert lo <= hi
    assert sf.param_key("lr") == sf.STOCHFLOW_PARAM_LR
    assert sf.param_key("grad_clip") == sf.STOCHFLOW_PARAM_GRAD_CLIP
    assert sf.param_name(sf.STOCHFLOW_PARAM_RTOL) == "rtol"
    assert sf.SOLVER_PARAMS["solver"][0] == sf.STOCHFLOW_PARAM_SOLVER
    with pytest.raises(sf.UnsupportedError):
        sf.param_key("learning_rate")
    with pytest.raises(sf.UnsupportedError):
        sf.param_name(150)
    with pytest.raises(sf.UnsupportedError):
        sf.param_bounds("nope")


@pytest.mark.parametrize("name", ["lr", "weight_decay", "grad_clip", "lr_decay_every",
                                  "threads", "rtol", "steps", "probes", "h_min"])
def test_bounds_match_validation(name):
    lo, hi, de = sf.param_bounds(name)
    obj = small() if name in sf.MODEL_PARAMS else sf.Solver()
    for v in (lo, hi):
        obj.set_param(name, v)
        assert obj.get_param(name) == (de if v == 0 else v)
    for v in (np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)):
        with pytest.raises(sf.InvalidArgumentError):
            obj.set_param(name, float(v))
    assert obj.get_param(name) == hi


def test_cosine_schedule_needs_its_horizon():
    with pytest.raises(ValueError, match="lr_total_steps"):
        sf.Model(2, hidden=(4,), lr_schedule="cosine")
    m = sf.Model(2, hidden=(4,))
    with pytest.raises(ValueError, match="lr_total_steps"):
        m.set_param("lr_schedule", "cosine")
    assert m.get_param("lr_schedule") == sf.STOCHFLOW_LR_CONSTANT  # unchanged
    # given with it, in any keyword order
    m = sf.Model(2, hidden=(4,), lr_schedule="cosine", lr_total_steps=300)
    assert m.get_param("lr_total_steps") == 300
    m = sf.Model(2, hidden=(4,))
    m.set_param("lr_total_steps", 200)
    m.set_param("lr_schedule", "cosine")
    assert m.get_param("lr_schedule") == sf.STOCHFLOW_LR_COSINE
    # a loaded model keeps the horizon it was saved with
    back = sf.Model.from_bytes(m.to_bytes())
    back.set_param("lr_schedule", "cosine")
    assert back.get_param("lr_total_steps") == 200


def test_unknown_keyword():
    with pytest.raises(TypeError, match="unknown model parameter"):
        sf.Model(2, hidden=(4,), learning_rate=1e-3)
    with pytest.raises(ValueError, match="activation"):
        sf.Model(2, hidden=(4,), activation="gelu")


# ---- shapes and conversions -------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros((3, 3)), np.zeros((2, 2, 1)),
                                 np.zeros((0, 2))])
def test_wrong_shape_names_the_shape(bad):
    m = small()
    with pytest.raises(ValueError) as e:
        m.velocity(0.5, bad)
    assert str(tuple(bad.shape)) in str(e.value)
    with pytest.raises(ValueError, match=re.escape(str(tuple(bad.shape)))):
        m.train_step(bad)


def test_zero_copy_for_contiguous_float32():
    x = np.ones((5, 2), dtype=np.float32)
    assert sf._matrix(x, 2) is x
    y = np.ones((5, 2), dtype=np.float64)
    assert sf._matrix(y, 2) is not y
    z = np.ones((2, 5), dtype=np.float32).T  # Fortran order: converted
    assert sf._matrix(z, 2).flags.c_contiguous


def test_converted_inputs_give_same_result():
    m = small()
    x = batch(8)
    v32 = m.velocity(0.3, x)
    np.testing.assert_array_equal(m.velocity(0.3, x.astype(np.float64)), v32)
    np.testing.assert_array_equal(m.velocity(0.3, np.asfortranarray(x)), v32)
    np.testing.assert_array_equal(m.velocity(0.3, x.tolist()), v32)


def test_out_argument_is_filled_in_place():
    m = small()
    x = batch(8)
    out = np.empty((8, 2), np.float32)
    assert m.velocity(0.2, x, out=out) is out
    with pytest.raises(ValueError):
        m.velocity(0.2, x, out=np.empty((8, 2), np.float64))


# ---- ownership ----------------------------------------------------------------------------


def test_parameters_share_memory():
    m = small()
    p = m.parameters()
    assert p.dtype == np.float32 and p.shape == (m.num_params,)
    assert np.shares_memory(p, m.parameters())
    x = batch(4)
    v0 = m.velocity(0.5, x)
    p[:] = 0.0  # zero weights and biases: the velocity becomes exactly 0
    assert np.all(m.velocity(0.5, x) == 0.0)
    assert not np.array_equal(v0, 0.0)


def test_views_keep_model_alive():
    m = small()
    p = m.parameters()
    freed = []
    weakref.finalize(m, freed.append, True)
    expect = p.copy()
    del m
    gc.collect()
    assert not freed  # the view still references the model
    np.testing.assert_array_equal(p, expect)
    del p
    gc.collect()
    assert freed


def test_gradients_and_two_phase_step():
    a, b = small(), small()
    x = batch(16)
    la = a.train_step(x)
    lb = b.compute_gradient(x)
    assert la == lb
    g = b.gradients()
    assert np.any(g != 0)
    b.apply_gradient()
    assert a.step == b.step == 1
    np.testing.assert_array_equal(a.parameters(), b.parameters())


def test_distinct_models_in_threads():
    """ctypes releases the GIL; distinct handles may run concurrently (doc/threading.md)
    and give the same bits as sequential runs."""
    import threading

    def train(m, out, i):
        out[i] = [m.train_step(batch(64, stream=k)) for k in range(20)]

    seq = [small(), small()]
    want = [None, None]
    for i, m in enumerate(seq):
        train(m, want, i)
    par = [small(), small()]
    got = [None, None]
    threads = [threading.Thread(target=train, args=(m, got, i)) for i, m in enumerate(par)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
    for a, b in zip(seq, par):
        np.testing.assert_array_equal(a.parameters(), b.parameters())


def test_one_model_from_two_threads():
    """One handle from two threads: the binding serializes calls per Model and Solver, so
    every call succeeds with the single-threaded answer (the C library would refuse the
    second caller with STOCHFLOW_E_BUSY), and no training step is lost."""
    import threading

    m = small(hidden=(64, 64))
    x = sf.toy_sample("moons", 512, seed=2)
    want = m.velocity(0.3, x)
    errors, wrong = [], []
    go = threading.Barrier(2)

    def evaluate():
        go.wait()
        try:
            for _ in range(200):
                if not np.array_equal(m.velocity(0.3, x), want):
                    wrong.append(1)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def train():
        go.wait()
        try:
            for k in range(25):
                m.train_step(batch(64, stream=k))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    for target in (evaluate, train):
        threads = [threading.Thread(target=target) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and wrong == []
    assert m.step == 50
    s = sf.Solver(solver="rk4", steps=4)
    lp = s.log_prob(m, x[:8])
    got = []
    threads = [threading.Thread(target=lambda: got.append(s.log_prob(m, x[:8])))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in got:
        np.testing.assert_array_equal(g, lp)


@pytest.mark.parametrize("seed", [2**64, -1, 2**70, 0.5])
def test_seed_outside_u64_refused(seed):
    """Seeds are integers in [0, 2**64): 2**64 does not wrap to 0, nor -1 to 2**64 - 1."""
    with pytest.raises(ValueError):
        sf.Model(2, hidden=(8,), seed=seed)
    with pytest.raises(ValueError):
        sf.toy_sample("moons", 4, seed=seed)
    with pytest.raises(ValueError):
        sf.random_normal(4, seed=seed)
    with pytest.raises(ValueError):
        sf.Solver(seed=seed)
    m = small()
    with pytest.raises(ValueError):
        m.sample(4, seed=seed)
    with pytest.raises(ValueError):
        sf.images_dequantize(np.zeros((1, 4), dtype=np.uint8), seed=seed)


def test_seed_range_ends_accepted():
    assert sf.Model(2, hidden=(8,), seed=2**64 - 1).config()["seed"] == 2**64 - 1
    np.testing.assert_array_equal(sf.random_normal(4, seed=0), sf.random_normal(4, seed=0.0))


# ---- training, evaluation, persistence ------------------------------------------------------


def test_train_and_loss():
    m = small(lr=1e-2)
    assert m.get_param("lr") == pytest.approx(1e-2)
    x = batch(64)
    l0 = m.loss(x)
    assert m.step == 0
    for k in range(30):
        loss = m.train_step(batch(64, stream=k))
        assert np.isfinite(loss)
    assert m.step == 30
    assert m.loss(x) != l0


def test_loss_with_given_x0_t():
    m = small()
    x1 = batch(8)
    x0 = sf.random_normal(16, seed=2).reshape(8, 2)
    t = np.linspace(0.05, 0.95, 8, dtype=np.float32)
    assert m.loss(x1, x0, t) == m.loss(x1, x0, t)
    with pytest.raises(ValueError, match=r"\(7,\)"):
        m.loss(x1, x0, t[:7])


def test_sample_and_log_prob_shapes():
    m = small()
    x = m.sample(10, solver="rk4", steps=8)
    assert x.shape == (10, 2) and x.dtype == np.float32
    x2, lp = m.sample(10, solver="rk4", steps=8, return_log_prob=True)
    np.testing.assert_array_equal(x, x2)
    assert lp.shape == (10,)
    logp = m.log_prob(x, solver="rk4", steps=8)
    assert logp.shape == (10,) and np.all(np.isfinite(logp))
    lp_e, se_e = m.log_prob(x, return_se=True, solver="rk4", steps=8)
    assert np.all(se_e == 0)
    lp_h, se_h = m.log_prob(x, trace="hutchinson", probes=1, return_se=True, solver="rk4",
                            steps=8)
    assert np.all(np.isnan(se_h))
    lp_h, se_h = m.log_prob(x, trace="hutchinson", probes=4, return_se=True, solver="rk4",
                            steps=8)
    assert np.all(se_h >= 0)
    # adaptive default solver
    assert np.all(np.isfinite(m.log_prob(x[:3])))


def test_solver_object_and_stats():
    m = small()
    s = sf.Solver(solver="rk4", steps=12)
    assert s.get_param("solver") == sf.STOCHFLOW_SOLVER_RK4
    assert s.get_param("steps") == 12
    s.sample(m, 4)
    st = s.stats
    assert st["accepted"] == 12 and st["nfe"] > 0 and st["t"] == 1.0
    x = batch(4)
    y, dlogp = s.integrate(m, x, 1.0, 0.0, return_dlogp=True)
    assert y.shape == x.shape and dlogp.shape == (4,)
    assert not np.shares_memory(x, y)
    with pytest.raises(TypeError):
        sf.Solver(tolerance=1e-3)


def test_divergence_and_vjp():
    m = small()
    x = batch(6)
    div, v = m.divergence(0.4, x, return_velocity=True)
    assert div.shape == (6,)
    np.testing.assert_array_equal(v, m.velocity(0.4, x))
    u = np.ones_like(x)
    assert m.velocity_vjp(0.4, x, u).shape == (6, 2)


def test_save_load_roundtrip(tmp_path):
    m = small(lr=5e-3)
    for k in range(3):
        m.train_step(batch(32, stream=k))
    path = tmp_path / "m.sfm"
    m.save(str(path))
    m2 = sf.Model.load(path)  # os.PathLike accepted
    assert m2.step == 3 and m2.config() == m.config()
    np.testing.assert_array_equal(m2.parameters(), m.parameters())
    # training continues bit for bit
    x = batch(32, stream=9)
    assert m.train_step(x) == m2.train_step(x)
    np.testing.assert_array_equal(m2.parameters(), m.parameters())
    m3 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m3.parameters(), m.parameters())
    assert m.to_bytes() == m3.to_bytes()


def test_config_roundtrip_and_tunables():
    m = sf.Model(2, hidden=(8, 4), activation="tanh", interpolant="linear", seed=5,
                 time_embedding="fourier", n_freq=3, lr_schedule="cosine", ema_decay=0.99,
                 eval_weights="live", lr_total_steps=500)
    c = m.config()
    assert c == {"dim": 2, "hidden": (8, 4), "activation": "tanh", "time_embedding": "fourier",
                 "n_freq": 3, "interpolant": "linear", "seed": 5}
    assert m.get_param("lr_schedule") == sf.STOCHFLOW_LR_COSINE
    assert m.get_param("eval_weights") == 2
    same = sf.Model(**c)
    np.testing.assert_array_equal(same.parameters(), m.parameters())
    assert "tanh" in repr(m)
    lo, hi, de = sf.param_bounds("lr")
    assert lo <= de <= hi


def test_resmlp_config_save_and_errors():
    m = sf.Model(3, resmlp=(12, 2), activation="tanh", seed=4, lr=1e-2)
    c = m.config()
    assert c["resmlp"] == (12, 2) and c["activation"] == "tanh"
    assert "resmlp=(12, 2)" in repr(m)
    # in 3 + 1 -> 12; 2 blocks of 2 x 12 (norm) + 2 x (12 x 12 + 12); norm; 12 -> 3
    assert m.num_params == 4 * 12 + 12 + 2 * (24 + 2 * 156) + 24 + 12 * 3 + 3
    same = sf.Model(**c)
    np.testing.assert_array_equal(same.parameters(), m.parameters())
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    for _ in range(3):
        m.train_step(x)
    back = sf.Model.from_bytes(m.to_bytes())
    assert back.config()["resmlp"] == (12, 2)
    np.testing.assert_array_equal(back.velocity(0.3, x), m.velocity(0.3, x))
    with pytest.raises(sf.InvalidArgumentError, match="blocks"):
        sf.Model(3, resmlp=(12, 0))
    with pytest.raises(sf.InvalidArgumentError, match="width"):
        sf.Model(3, resmlp=(0, 2))
    with pytest.raises(ValueError, match="give one"):
        sf.Model(4, resmlp=(8, 1), unet={"channels": 1, "height": 2, "width": 2})
    # a loaded model's configuration builds the same network again
    again = sf.Model(**back.config())
    assert again.config()["resmlp"] == (12, 2) and again.num_params == m.num_params


def test_resmlp_experts():
    m = sf.Model(3, resmlp=(12, 2, 4), seed=4, lr=1e-2)
    c = m.config()
    assert c["resmlp"] == (12, 2, 4)
    # the plain network plus W_g [4 x 12], b_g [4], E [4*3 x 7], c [4*3]
    plain = sf.Model(3, resmlp=(12, 2), seed=4)
    assert m.num_params == plain.num_params + 48 + 4 + 84 + 12
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    # the experts start at zero: the same field as without them
    np.testing.assert_array_equal(m.velocity(0.4, x), plain.velocity(0.4, x))
    for _ in range(3):
        m.train_step(x)
    back = sf.Model.from_bytes(m.to_bytes())
    assert back.config()["resmlp"] == (12, 2, 4)
    np.testing.assert_array_equal(back.velocity(0.3, x), m.velocity(0.3, x))
    assert sf.Model(**back.config()).num_params == m.num_params
    with pytest.raises(sf.InvalidArgumentError, match="experts"):
        sf.Model(3, resmlp=(12, 2, 65))
    with pytest.raises(ValueError, match="width, blocks, experts"):
        sf.Model(3, resmlp=(12, 2, 3, 1))


def test_batch_target_param_and_refusal():
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    m = sf.Model(3, hidden=(16,), seed=2, train_target="batch")
    assert m.get_param("train_target") == sf.STOCHFLOW_TRAIN_TARGET_BATCH
    d = sf.Model(3, hidden=(16,), seed=2)
    assert d.get_param("train_target") == sf.STOCHFLOW_TRAIN_TARGET_DRAW
    assert m.loss(x) == d.loss(x)  # the validation loss keeps each row's own target
    m.train_step(x)
    d.train_step(x)
    assert not np.array_equal(m.parameters(), d.parameters())
    back = sf.Model.from_bytes(m.to_bytes())
    assert back.get_param("train_target") == sf.STOCHFLOW_TRAIN_TARGET_BATCH
    ot = sf.Model(3, hidden=(16,), seed=2, train_target="batch", coupling="ot")
    before = ot.parameters().copy()
    with pytest.raises(sf.UnsupportedError, match="batch-posterior"):
        ot.train_step(x)
    np.testing.assert_array_equal(ot.parameters(), before)
    with pytest.raises(ValueError):
        sf.Model(3, train_target="mean")


# ---- utilities ------------------------------------------------------------------------------


def test_toys_and_random():
    names = sf.toy_names()
    assert "moons" in names and "checkerboard" in names
    x = sf.toy_sample("checkerboard", 100, seed=2)
    assert x.shape == (100, 2)
    np.testing.assert_array_equal(x, sf.toy_sample("checkerboard", 100, seed=2))
    lp, ent = sf.toy_log_density("checkerboard", x)
    assert lp.shape == (100,) and ent == pytest.approx(np.log(32.0))
    r = sf.random_normal(10, seed=4, stream=1)
    np.testing.assert_array_equal(r[:5], sf.random_normal(5, seed=4, stream=1))
    u = sf.random_uniform(20000, seed=4, stream=1)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    np.testing.assert_array_equal(u[:5], sf.random_uniform(5, seed=4, stream=1))
    assert abs(u.mean() - 0.5) < 0.01  # sd of the mean: 0.29 / sqrt(20000) = 0.002
    assert not np.array_equal(u[:5], sf.random_uniform(5, seed=4, stream=2))


def test_png_write(tmp_path):
    img = np.zeros((4, 5, 3), np.uint8)
    img[1, 2] = (255, 0, 0)
    path = tmp_path / "a.png"
    sf.png_write(path, img)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        sf.png_write(path, np.zeros((4, 5, 2), np.uint8))


# ---- learnable interpolant, couplings ---------------------------------------------------------


def test_fourier_interpolant_and_transport():
    m = sf.Model(2, hidden=(16, 16), seed=1, interpolant="fourier", n_modes=3,
                 interp_base="trig", coupling="ot", interp_lr=1e-2, threads=1)
    c = m.config()
    assert (c["interpolant"], c["interp_base"], c["n_modes"]) == ("fourier", "trig", 3)
    assert m.get_param("coupling") == sf.STOCHFLOW_COUPLING_OT
    alpha, beta = m.interpolant_coefficients()
    assert alpha.shape == beta.shape == (3,) and not alpha.any() and not beta.any()
    assert m.interpolant_eval(0.0)[:2] == (1.0, 0.0)
    assert m.interpolant_eval(1.0)[:2] == pytest.approx((0.0, 1.0), abs=1e-12)
    with pytest.raises(sf.InvalidArgumentError):
        m.path_length()  # before the first step
    for k in range(3):
        m.train_step(batch(32, stream=k))
    assert m.path_length()[1] == 3
    assert m.interpolant_coefficients()[0].any()  # the ascent step moved them
    assert sf.Model(**c).config() == c
    with pytest.raises(sf.InvalidArgumentError):
        small().interpolant_coefficients()  # not a Fourier model


def test_coupling_assign():
    x1 = batch(6)
    x0 = x1[::-1].copy()
    perm, cost = sf.coupling_assign(x0, x1, "ot")
    assert sorted(perm) == list(range(6))
    np.testing.assert_array_equal(x0[perm], x1)  # the exact matching is the reversal
    assert cost == 0.0
    perm, _ = sf.coupling_assign(x0, x1, "independent")
    assert list(perm) == list(range(6))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        sf.coupling_assign(x0[:5], x1)


def test_standardization_in_the_model():
    # log p in user units = log p of the standardized points - sum log scale, and the map
    # travels with the model's bytes.
    shift, scale = np.array([100.0, -2.0]), np.array([10.0, 0.5])
    a, b = small(), small()  # the same weights
    assert a.standardization() is None
    a.set_standardization(shift, scale)
    got = a.standardization()
    np.testing.assert_array_equal(got[0], shift)
    np.testing.assert_array_equal(got[1], scale)
    x = (shift + scale * np.random.default_rng(0).normal(size=(16, 2))).astype(np.float32)
    z = a.standardize(x)
    np.testing.assert_allclose(z, (x - shift) / scale, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.standardize(z, inverse=True), x, rtol=1e-6)
    s = sf.Solver(solver="rk4", steps=4)
    np.testing.assert_allclose(s.log_prob(a, x), s.log_prob(b, z) - np.log(scale).sum(),
                               rtol=0, atol=1e-5)
    c = sf.Model.from_bytes(a.to_bytes())
    np.testing.assert_array_equal(c.standardization()[1], scale)
    with pytest.raises(sf.Error, match="column 1 is constant"):
        b.fit_standardization(np.c_[np.ones(8), np.arange(8.0)])
    a.set_standardization(None, None)
    assert a.standardization() is None
