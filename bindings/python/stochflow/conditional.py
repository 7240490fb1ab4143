"""ConditionalFlow: a conditional density estimator p(y | X) on (X, y) pairs, fitted with
a conditional stochastic-interpolant flow (doc/conditional.md). Each row of X is the
context of the same row of y. X and y are standardized (means and standard deviations of
the training pairs); log-densities are reported in the units of y (the Jacobian of the
standardization included).

    est = ConditionalFlow(hidden=(128, 128), steps=3000).fit(X, y)
    draws = est.sample(X_new[0], n=500)          # y ~ p(y | X_new[0])
    logp = est.log_prob(y_test, X_test)          # log p(y_i | X_i)
"""
import numpy as np

from . import Model


class ConditionalFlow:
    """p(y | X) from (X, y) pairs.

    ConditionalFlow(hidden=(128, 128, 128), steps=2000, batch=256, lr=2e-3, seed=0,
                    threads=1, ctx_dropout=0.0, **model_options)

    fit draws minibatches uniformly with replacement, indices from numpy's generator
    seeded with (seed, step), so a fit is reproducible; the
    learning rate follows a cosine schedule over the steps. model_options go to Model
    (activation, interpolant, time_embedding, ...).
    """

    def __init__(self, hidden=(128, 128, 128), steps=2000, batch=256, lr=2e-3, seed=0,
                 threads=1, ctx_dropout=0.0, **model_options):
        self.hidden = tuple(hidden)
        self.steps = int(steps)
        self.batch = int(batch)
        self.lr = float(lr)
        self.seed = int(seed)
        self.threads = int(threads)
        self.ctx_dropout = float(ctx_dropout)
        self.model_options = model_options
        self.model_ = None

    @staticmethod
    def _2d(a, name):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] < 1:
            raise ValueError("%s must be (n, k) or (n,), got shape %s" % (name, a.shape))
        return a

    def fit(self, X, y):
        X, y = self._2d(X, "X"), self._2d(y, "y")
        if X.shape[0] != y.shape[0]:
            raise ValueError("X has %d rows but y has %d" % (X.shape[0], y.shape[0]))
        self.x_mean_, self.x_std_ = X.mean(0), X.std(0) + 1e-12
        self.y_mean_, self.y_std_ = y.mean(0), y.std(0) + 1e-12
        Xs = ((X - self.x_mean_) / self.x_std_).astype(np.float32)
        ys = ((y - self.y_mean_) / self.y_std_).astype(np.float32)
        n = X.shape[0]
        self.model_ = Model(y.shape[1], hidden=self.hidden, seed=self.seed, threads=self.threads,
                            n_ctx=X.shape[1], lr=self.lr, lr_total_steps=self.steps,
                            lr_schedule="cosine", ctx_dropout=self.ctx_dropout,
                            **self.model_options)
        self.losses_ = []
        for step in range(self.steps):
            idx = np.random.default_rng([self.seed, step]).integers(0, n, self.batch)
            self.losses_.append(self.model_.train_step(ys[idx], ctx=Xs[idx]))
        return self

    def _ctx(self, X, n):
        """n standardized context rows: X one row (k values) for every point, or (n, k)
        (or (n,) when k = 1)."""
        k = len(self.x_mean_)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim <= 1 and X.size == k:
            X = np.broadcast_to(X.reshape(1, k), (n, k))
        elif X.ndim == 1 and k == 1:
            X = X[:, None]
        if X.shape != (n, k):
            raise ValueError("X must be one row of %d values or (%d, %d), got shape %s"
                             % (k, n, k, X.shape))
        return np.ascontiguousarray((X - self.x_mean_) / self.x_std_, dtype=np.float32)

    def sample(self, X, n=1, seed=0, guidance=0.0, **options):
        """n draws of y given one context row X (k values), or one draw per row of X (n, k)."""
        if self.model_ is None:
            raise RuntimeError("ConditionalFlow: call fit first")
        X = np.asarray(X, dtype=np.float64)
        rows = X.shape[0] if X.ndim == 2 else n
        ctx = self._ctx(X, rows)
        ys = self.model_.sample(rows, seed=seed, ctx=ctx, guidance=guidance, **options)
        return ys * self.y_std_ + self.y_mean_

    def log_prob(self, y, X, **options):
        """log p(y_i | X_i) for each row (X may be one row for every y)."""
        if self.model_ is None:
            raise RuntimeError("ConditionalFlow: call fit first")
        y = self._2d(y, "y")
        ctx = self._ctx(X, y.shape[0])
        ys = ((y - self.y_mean_) / self.y_std_).astype(np.float32)
        return self.model_.log_prob(ys, ctx=ctx, **options) - float(np.log(self.y_std_).sum())
