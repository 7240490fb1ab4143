"""stochflow.estimator.FlowDensity under scikit-learn: its estimator checks, clone,
cross_val_score, GridSearchCV, pandas column names, reproducible sampling. Small and fast
(tiny networks, tens of steps): this file runs in a few seconds."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")  # Debian: python3-sklearn

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import stochflow as sf  # noqa: E402
from stochflow.estimator import FlowDensity  # noqa: E402

FAST = dict(hidden=(16,), max_steps=30, batch_size=32, solver="rk4", solver_steps=4)


def moons(n=200, seed=1):
    return sf.toy_sample("moons", n, seed=seed).astype(np.float64)


def test_sklearn_check_estimator():
    # Every check scikit-learn 1.2 runs for an unsupervised estimator applies and runs;
    # none is skipped with a fixed-step solver (check_estimator raises on the first
    # failure).
    check_estimator(FlowDensity(**FAST))


def test_sklearn_check_estimator_default_solver():
    # The default dopri5 passes every check but subset invariance, which it declares
    # (its shared step size couples a solve's rows at float32 rounding).
    est = FlowDensity(**dict(FAST, solver="dopri5"))
    assert list(est._get_tags()["_xfail_checks"]) == ["check_methods_subset_invariance"]
    with pytest.warns(sklearn.exceptions.SkipTestWarning, match="subset"):
        check_estimator(est)


def test_defaults_are_the_cli_table_recipe():
    est = FlowDensity()
    assert est.hidden == (256, 256, 256) and est.solver == "dopri5"
    assert est.patience == 50 and est.val_fraction == "auto" and est.eval_every == "auto"
    assert est.max_steps == 30000 and est.ema_decay == 0.999
    # small budget, same rules: 10% held out from 200 rows, evaluations every 10 steps
    est = FlowDensity(hidden=(16,), max_steps=40, random_state=0).fit(moons(200))
    st = est.fit_stats_
    assert st["val_rows"] == 20 and st["train_rows"] == 180 and st["evals"] == 4
    # fewer than 20 rows: no validation, the whole budget
    st = FlowDensity(hidden=(16,), max_steps=12, random_state=0).fit(moons(19)).fit_stats_
    assert st["val_rows"] == 0 and st["steps"] == 12
    with pytest.raises(ValueError, match="val_fraction"):
        FlowDensity(val_fraction="half").fit(moons(50))


def test_fit_score_sample_reproducible():
    X = moons()
    a = FlowDensity(random_state=0, **FAST).fit(X)
    b = clone(a).fit(X)
    assert a.n_features_in_ == 2
    s = a.score_samples(X[:10])
    assert s.shape == (10,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    assert np.array_equal(s, b.score_samples(X[:10]))      # same random_state, same bits
    assert a.score(X) == pytest.approx(np.mean(a.score_samples(X)))
    draws = a.sample(5, random_state=3)
    assert draws.shape == (5, 2)
    assert np.array_equal(draws, a.sample(5, random_state=3))
    assert not np.array_equal(draws, a.sample(5, random_state=4))
    c = pickle.loads(pickle.dumps(a))
    assert np.array_equal(c.score_samples(X[:10]), s)


def test_training_improves_the_likelihood():
    X, Xt = moons(400, 1), moons(400, 2)
    short = FlowDensity(hidden=(32, 32), max_steps=5, lr=1e-2, batch_size=64, solver_steps=8,
                        random_state=0).fit(X)
    longer = clone(short).set_params(max_steps=300).fit(X)
    # held-out mean log-likelihood, nats: about -3.36 after 5 steps, -3.05 after 300
    assert longer.score(Xt) > short.score(Xt) + 0.15


def test_standardize_is_a_change_of_variables():
    # Scaling the data by 10 shifts the log-density by exactly -d log 10 (same flow).
    X = moons()
    a = FlowDensity(random_state=0, **FAST).fit(X)
    b = FlowDensity(random_state=0, **FAST).fit(10 * X)
    np.testing.assert_allclose(b.score_samples(10 * X[:20]),
                               a.score_samples(X[:20]) - 2 * np.log(10), rtol=0, atol=1e-4)


def test_validation_and_early_stopping_through_the_c_trainer():
    est = FlowDensity(hidden=(16,), max_steps=200, batch_size=32, solver_steps=4,
                      val_fraction=0.25, eval_every=5, patience=2, min_delta=10.0,
                      random_state=0).fit(moons())
    st = est.fit_stats_
    assert st["stop"] == "patience" and st["steps"] == 15 and st["val_rows"] == 50


def test_cross_val_score_and_grid_search():
    X = moons(150)
    scores = cross_val_score(FlowDensity(random_state=0, **FAST), X,
                             cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    grid = GridSearchCV(FlowDensity(random_state=0, **FAST),
                        {"max_steps": [2, 60], "lr": [3e-3]}, cv=3).fit(X)
    assert grid.best_params_["max_steps"] == 60
    assert np.isfinite(grid.score(X))


def test_pandas_column_names():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(moons(100), columns=["height", "weight"])
    est = FlowDensity(random_state=0, **FAST).fit(df)
    assert list(est.feature_names_in_) == ["height", "weight"]
    assert est.score_samples(df).shape == (100,)
    with pytest.raises(ValueError, match="feature names should match"):
        est.score_samples(df.rename(columns={"weight": "mass"}))
    with pytest.warns(UserWarning, match="valid feature names"), \
            pytest.raises(ValueError, match="features"):
        est.score_samples(np.zeros((3, 3)))


def test_standardization_is_the_models_own():
    # The library fits the map on the training rows only and stores it in the model.
    X = 5 * moons() + 3
    est = FlowDensity(val_fraction=0.25, random_state=0, **FAST).fit(X)
    shift, scale = est.model_.standardization()
    n_val = est.fit_stats_["val_rows"]
    assert 0 < n_val < len(X)
    assert not np.allclose(shift, X.mean(0), rtol=0, atol=1e-9)  # not all the rows
    np.testing.assert_allclose(est.mean_, shift)
    # a constant column is an error naming it
    Xc = X.copy()
    Xc[:, 1] = 2.0
    with pytest.raises(Exception, match="column 2 is constant"):
        FlowDensity(random_state=0, **FAST).fit(Xc)
    # off: no map in the model
    off = FlowDensity(standardize=False, random_state=0, **FAST).fit(X)
    assert off.model_.standardization() is None


def test_whitening_is_a_change_of_variables():
    # standardize="whiten": log p in X's units equals the flow's log-density of the
    # whitened rows minus log|det| of the map, sum(log std) + sum(log diag(L)), by hand.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3)) @ np.array([[2.0, 0, 0], [1.5, 0.3, 0], [0, 1, 4]]).T + 7
    # ema_decay=0: the live weights (copied below) are the ones scored
    est = FlowDensity(standardize="whiten", ema_decay=0, random_state=0, **FAST).fit(X)
    L = est.whitening_
    assert L is not None and L.shape == (3, 3) and np.all(np.triu(L, 1) == 0)
    Z = np.linalg.solve(L, ((X[:20] - est.mean_) / est.scale_).T).T
    np.testing.assert_allclose(est.model_.standardize(X[:20]), Z, rtol=0, atol=1e-5)
    plain = sf.Model(3, hidden=(16,))
    plain.parameters()[:] = est.model_.parameters()
    solver = sf.Solver(solver="rk4", steps=4)
    logdet = np.sum(np.log(est.scale_)) + np.sum(np.log(np.diag(L)))
    np.testing.assert_allclose(est.score_samples(X[:20]),
                               solver.log_prob(plain, Z.astype(np.float32)) - logdet,
                               rtol=0, atol=1e-4)
    assert FlowDensity(standardize="diag", random_state=0, **FAST).fit(X).whitening_ is None
    # collinear columns: an error naming them
    Xc = X.copy()
    Xc[:, 2] = X[:, 0] - 2 * X[:, 1]
    with pytest.raises(Exception, match="column 3 is .nearly. a linear combination of "
                                        "columns 1, 2"):
        FlowDensity(standardize="whiten", random_state=0, **FAST).fit(Xc)
    with pytest.raises(ValueError, match="standardize"):
        FlowDensity(standardize="zca", random_state=0, **FAST).fit(X)


def test_context_map_of_a_conditional_model():
    # every _ctx call takes the context in its own units; same numbers as the mapped
    # context given to a model without the map (no Jacobian in log p(x | c))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    c = (rng.normal(size=(64, 1)) * 30 + 500).astype(np.float32)
    a = sf.Model(2, hidden=(16,), n_ctx=1, seed=3)
    b = sf.Model(2, hidden=(16,), n_ctx=1, seed=3)
    a.fit_context_standardization(c)
    shift, scale = a.context_standardization()
    assert b.context_standardization() is None
    cz = ((c.astype(np.float64) - shift) / scale).astype(np.float32)
    np.testing.assert_array_equal(a.velocity(0.3, x, ctx=c), b.velocity(0.3, x, ctx=cz))
    solver = sf.Solver(solver="rk4", steps=4)
    np.testing.assert_array_equal(solver.log_prob(a, x, ctx=c), solver.log_prob(b, x, ctx=cz))
