"""Stochastic interpolants through the binding: training a drift, score or denoiser
model (Model(objective=, gamma=)), SDE sampling (sample(sde=, score_model=)) and the SDE
likelihood (sde_log_prob); the configuration round trip; the refusals."""
import numpy as np
import pytest

import stochflow as sf


def train(objective=None, gamma=None, antithetic=False, steps=60, seed=3):
    m = sf.Model(2, hidden=(16, 16), seed=seed, threads=1, lr=3e-3, objective=objective,
                 gamma=gamma, antithetic=antithetic)
    for s in range(steps):
        m.train_step(sf.toy_sample("8gaussians", 128, seed=1, stream=s))
    return m


def test_objective_in_config_and_checkpoint():
    m = sf.Model(2, hidden=(8,), objective="score", gamma="brownian:0.5", antithetic=True)
    c = m.config()
    assert c["objective"] == "score" and c["gamma"] == ("brownian_scaled", 0.5)
    assert c["antithetic"] is True and c["si_kind"] == "two_sided"
    assert sf.Model(**c).config() == c
    assert sf.Model.from_bytes(m.to_bytes()).config() == c
    plain = sf.Model(2, hidden=(8,))
    assert "objective" not in plain.config()
    assert b"SINT" in m.to_bytes() and b"SINT" not in plain.to_bytes()


def test_objective_refusals():
    with pytest.raises(ValueError):
        sf.Model(2, objective="flow")
    with pytest.raises(ValueError):
        sf.Model(2, objective="score", gamma="quadratic:2")
    with pytest.raises(sf.InvalidArgumentError):
        sf.Model(2, objective="score", gamma="zero")


def test_sde_sample_and_log_prob():
    drift = train("drift")
    score = train("score", antithetic=True)
    den = train("denoiser", gamma="quadratic")
    x, nfe = drift.sample(300, sde=0.5, score_model=score, steps=20, seed=1, return_nfe=True)
    assert x.shape == (300, 2) and np.isfinite(x).all() and nfe == 40
    x2 = drift.sample(300, sde=0.5, score_model=score, steps=20, seed=1)
    assert (x == x2).all()
    x3, nfe3 = drift.sample(50, sde=1.0, score_model=den, steps=10, sde_method="em",
                            return_nfe=True)
    assert np.isfinite(x3).all() and nfe3 == 10
    lp, se = drift.sde_log_prob(x[:40], 0.5, score_model=score, paths=4, steps=20)
    assert lp.shape == (40,) and np.isfinite(lp).all() and (se > 0).all()
    with pytest.raises(ValueError):
        score.sample(5, sde=0.5)              # a score model is not a drift model
    with pytest.raises(ValueError):
        drift.sample(5, sde=0.5)              # a gamma model needs its score model
    with pytest.raises(ValueError):
        drift.sample(5, sde=0.5, score_model=drift)


def test_sde_zero_is_heun_ode_and_score_from_velocity():
    v = train()
    a = v.sample(64, sde=0.0, steps=10, seed=2)
    b = v.sample(64, solver="heun", steps=10, seed=2)
    assert (a == b).all()
    c = v.sample(64, sde=0.5, steps=10, seed=2)
    assert np.isfinite(c).all() and not (c == a).all()
    # sde_t_end: noise only before it (t_end 0.05 leaves only the noise-free first step)
    assert (v.sample(64, sde=0.5, steps=10, seed=2, sde_t_end=0.05) == a).all()
    assert not (v.sample(64, sde=0.5, steps=10, seed=2, sde_t_end=0.5) == c).all()
    lp, se = v.sde_log_prob(c[:10], 0.2, paths=2, steps=10)
    assert np.isfinite(lp).all()


def test_sde_conditional_guidance_and_hutchinson():
    m = sf.Model(2, hidden=(16, 16), seed=4, threads=1, lr=3e-3, n_classes=3,
                 ctx_dropout=0.2)
    rng = np.random.default_rng(0)
    for s in range(40):
        lab = rng.integers(0, 3, 128).astype(np.int32)
        x = rng.normal(size=(128, 2)).astype(np.float32) * 0.3 + lab[:, None]
        m.train_step(x, labels=lab)
    lab = np.array([0, 1, 2, -1] * 8, dtype=np.int32)
    # eps = 0 with labels and guidance: the guided Heun ODE bit for bit
    a = m.sample(32, sde=0.0, steps=8, labels=lab, guidance=1.5, seed=3)
    b = m.sample(32, solver="heun", steps=8, labels=lab, guidance=1.5, seed=3)
    assert (a == b).all()
    c = m.sample(32, sde=0.5, steps=8, labels=lab, guidance=1.5, seed=3)
    d = m.sample(32, sde=0.5, steps=8, labels=2, guidance=1.5, seed=3)
    assert np.isfinite(c).all() and not (c == a).all() and not (c == d).all()
    # w = 0 and no labels: the plain call
    e = m.sample(32, sde=0.5, steps=8, seed=3)
    f = m.sample(32, sde=0.5, steps=8, labels=None, guidance=0.0, seed=3)
    assert (e == f).all()
    lp, se = m.sde_log_prob(c[:6], 0.3, paths=3, steps=8, labels=lab[:6], guidance=1.5)
    assert np.isfinite(lp).all() and (se > 0).all()
    lh, sh = m.sde_log_prob(c[:6], 0.0, paths=200, steps=8, labels=lab[:6], trace="hutchinson")
    lx, _ = m.sde_log_prob(c[:6], 0.0, paths=2, steps=8, labels=lab[:6])
    assert (np.abs(lh - lx) < 5 * sh + 1e-4).all()
    with pytest.raises(sf.InvalidArgumentError):
        m.sample(4, sde=0.5, labels=3)       # label out of range
    with pytest.raises(sf.InvalidArgumentError):
        train().sample(4, sde=0.5, guidance=1.0)  # guidance on an unconditional model
