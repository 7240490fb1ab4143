"""Conditional models through the Python binding (doc/conditional.md): ctx=/labels= on
every data method, guidance, checkpoints, and the ConditionalFlow estimator on a
linear-Gaussian posterior with a closed form."""
import numpy as np
import pytest

import stochflow as sf


def cond_model(**kw):
    args = dict(hidden=(32, 32), seed=1, threads=1, n_ctx=3, n_classes=4)
    args.update(kw)
    return sf.Model(2, **args)


def test_context_and_labels_reach_every_method():
    m = cond_model(ctx_dropout=0.1)
    assert m.context == (3, 4)
    assert m.config()["n_ctx"] == 3 and m.config()["n_classes"] == 4
    assert m.get_param("ctx_dropout") == pytest.approx(0.1)
    x = sf.toy_sample("moons", 64, seed=1)
    c = sf.random_normal(64 * 3, seed=2).reshape(64, 3)
    lab = np.arange(64) % 5 - 1
    for _ in range(3):
        assert np.isfinite(m.train_step(x, ctx=c, labels=lab))
    assert np.isfinite(m.loss(x, ctx=c, labels=lab))
    v1 = m.velocity(0.3, x, ctx=c, labels=lab)
    assert not np.array_equal(v1, m.velocity(0.3, x))
    assert np.array_equal(m.velocity(0.3, x), m.velocity(0.3, x, labels=np.full(64, -1)))
    div, v = m.divergence(0.3, x, return_velocity=True, ctx=c, labels=lab)
    assert np.array_equal(v, v1) and div.shape == (64,)
    assert m.velocity_vjp(0.3, x, x, ctx=c, labels=lab).shape == (64, 2)
    # one context row and one label for every sample; guidance 0 is the unguided sample
    a = m.sample(16, ctx=c[0], labels=2, solver="rk4", steps=8)
    b = m.sample(16, ctx=c[0], labels=2, solver="rk4", steps=8, guidance=0.0)
    g = m.sample(16, ctx=c[0], labels=2, solver="rk4", steps=8, guidance=2.0)
    assert np.array_equal(a, b) and not np.array_equal(a, g)
    assert np.all(np.isfinite(m.log_prob(a, ctx=c[0], labels=2)))
    # checkpoint round trip keeps the conditioning
    m2 = sf.Model.from_bytes(m.to_bytes())
    assert m2.context == (3, 4)
    assert np.array_equal(m2.velocity(0.3, x, ctx=c, labels=lab), v1)


def test_conditioning_errors():
    m = cond_model()
    x = sf.toy_sample("moons", 8, seed=1)
    with pytest.raises(ValueError):
        m.velocity(0.3, x, ctx=np.zeros((8, 2)))
    with pytest.raises(sf.InvalidArgumentError):
        m.velocity(0.3, x, labels=np.full(8, 4))
    u = sf.Model(2, hidden=(8,), seed=1)
    with pytest.raises(sf.InvalidArgumentError):
        u.velocity(0.3, x, ctx=np.zeros((8, 0)), labels=np.zeros(8))
    with pytest.raises(sf.InvalidArgumentError):
        u.sample(4, guidance=1.0)


def test_conditional_flow_linear_gaussian():
    # theta ~ N(0, 1), x | theta ~ N(theta, 0.5^2): theta | x ~ N(0.8 x, 0.2)
    r = np.random.default_rng(0)
    theta = r.standard_normal(20000)
    x = theta + 0.5 * r.standard_normal(20000)
    est = sf.ConditionalFlow(hidden=(64, 64), steps=800, batch=256, seed=1).fit(x, theta)
    draws = est.sample([1.0], n=2000, solver="rk4", steps=20)
    assert abs(draws.mean() - 0.8) < 0.1 and abs(draws.var() - 0.2) < 0.06
    grid = np.linspace(0.0, 1.6, 8)  # within 2 posterior standard deviations
    lp = est.log_prob(grid, np.ones(8))
    exact = -0.5 * (grid - 0.8) ** 2 / 0.2 - 0.5 * np.log(2 * np.pi * 0.2)
    assert np.max(np.abs(lp - exact)) < 0.2
