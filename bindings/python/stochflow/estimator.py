"""A scikit-learn density estimator over the C trainer (doc/training.md).

    from stochflow.estimator import FlowDensity
    est = FlowDensity(hidden=(64, 64), max_steps=2000).fit(X)
    est.score_samples(X_test)        # log-densities, nats
    est.score(X_test)                # mean log-likelihood (higher is better)
    est.sample(100, random_state=0)

It follows scikit-learn's estimator contract (get_params/set_params, clone, fit returning
self, n_features_in_, feature_names_in_ for pandas input) so that cross_val_score and
GridSearchCV work; scikit-learn is needed only for this module.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import Model, Solver
from .training import Trainer


def _seed(random_state):
    """An integer seed >= 1 from None, an int or a RandomState (sklearn convention)."""
    if random_state is None:
        return 1
    if isinstance(random_state, numbers.Integral):
        return int(random_state) + 1
    return int(check_random_state(random_state).randint(1, 2**31 - 1))


class FlowDensity(DensityMixin, BaseEstimator):
    """Continuous normalizing flow density estimator (stochastic interpolants).

    Parameters (all plain values, as scikit-learn requires):
      hidden, activation, interpolant: the velocity network (see stochflow.Model)
      lr, lr_schedule, weight_decay: the optimizer (cosine over max_steps by default)
      batch_size, max_steps, max_seconds, eval_every, patience, val_fraction, val_subset,
      min_delta: the C trainer (doc/training.md); validation and early stopping happen
      only with val_fraction > 0
      solver, solver_steps: the ODE solver of score_samples, sample and the validation
        ("rk4" with 20 steps by default; "dopri5" ignores solver_steps)
      standardize: the model's standardization (doc/data.md), fitted by the library on
        the training rows and stored in the model; log-densities and samples are in X's
        units (the log-determinant -sum(log std) included); a constant column is an error.
        True or "diag": per column; "whiten": whitening (the mean and the Cholesky factor
        of the covariance; collinear columns are an error naming them); False or "none"
      threads: BLIS/OpenMP threads of the model (results do not depend on it)
      random_state: None, an int or a RandomState: weight init, batches, split, base draws

    Attributes after fit: model_ (stochflow.Model), n_features_in_, feature_names_in_
    (pandas input), mean_, scale_ (the model's map), whitening_ (its d x d factor L with
    standardize="whiten", else None), fit_stats_ (the trainer's statistics).
    """

    def __init__(self, hidden=(64, 64), activation="silu", interpolant="trig", lr=2e-3,
                 lr_schedule="cosine", weight_decay=0.0, batch_size=256, max_steps=1000,
                 max_seconds=0.0, eval_every=100, patience=0, val_fraction=0.0, val_subset=256,
                 min_delta=0.0, solver="rk4", solver_steps=20, standardize=True, threads=1,
                 random_state=None):
        self.hidden = hidden
        self.activation = activation
        self.interpolant = interpolant
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_seconds = max_seconds
        self.eval_every = eval_every
        self.patience = patience
        self.val_fraction = val_fraction
        self.val_subset = val_subset
        self.min_delta = min_delta
        self.solver = solver
        self.solver_steps = solver_steps
        self.standardize = standardize
        self.threads = threads
        self.random_state = random_state

    def _solver_options(self):
        opts = {"solver": self.solver}
        if self.solver != "dopri5":
            opts["steps"] = int(self.solver_steps)
        return opts

    def fit(self, X, y=None):
        """Train a new flow on the rows of X (n_samples, n_features); y is ignored."""
        X = self._validate_data(X, dtype=np.float64)
        if X.shape[0] < 2:
            raise ValueError("FlowDensity needs at least 2 samples, got n_samples = %d"
                             % X.shape[0])
        seed = _seed(self.random_state)
        model = Model(X.shape[1], hidden=tuple(int(h) for h in self.hidden),
                      activation=self.activation, interpolant=self.interpolant, seed=seed,
                      threads=int(self.threads), lr=float(self.lr),
                      lr_schedule=self.lr_schedule,
                      # the trainer spans the schedule over its step budget
                      lr_total_steps=max(1, int(self.max_steps)))
        if self.weight_decay:
            model.set_param("weight_decay", float(self.weight_decay))
        trainer = Trainer(batch_size=int(self.batch_size), max_steps=int(self.max_steps),
                          max_seconds=float(self.max_seconds),
                          eval_every=int(self.eval_every), patience=int(self.patience),
                          val_fraction=float(self.val_fraction),
                          val_subset=int(self.val_subset), min_delta=float(self.min_delta),
                          seed=seed, standardize=self.standardize,
                          **self._solver_options())
        # the library fits the standardization on the training rows (not the validation
        # split) and keeps it in the model: log-densities and samples in X's units
        trainer.fit(model, X.astype(np.float32))
        std = model.standardization()
        self.mean_, self.scale_ = std if std is not None else \
            (np.zeros(X.shape[1]), np.ones(X.shape[1]))
        self.whitening_ = model.whitening()
        self.model_ = model
        self.fit_stats_ = trainer.stats
        return self

    def score_samples(self, X):
        """Log-density of each row of X under the fitted flow (nats), shape (n_samples,)."""
        check_is_fitted(self, "model_")
        X = self._validate_data(X, dtype=np.float64, reset=False)
        logp = Solver(**self._solver_options()).log_prob(self.model_, X.astype(np.float32))
        return logp.astype(np.float64)

    def score(self, X, y=None):
        """Mean log-likelihood of the rows of X (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """n_samples draws from the fitted flow, shape (n_samples, n_features); the same
        random_state gives the same draws."""
        check_is_fitted(self, "model_")
        x = Solver(**self._solver_options()).sample(self.model_, int(n_samples),
                                                    seed=_seed(random_state))
        return x.astype(np.float64)

    def _more_tags(self):
        # Non-deterministic across BLIS builds is not an issue; fit needs no y.
        return {"requires_y": False, "X_types": ["2darray"]}
