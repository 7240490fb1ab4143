"""The C trainer (stochflow_trainer, doc/training.md) and the C data readers
(stochflow_data_*, doc/data.md), thin over ctypes like the rest of the binding."""

import ctypes
import os
import weakref

import numpy as np

from . import _capi
from . import (_call, _lib, _matrix, _ptr, _param, _enum, SOLVER_PARAMS, Error)

# Trainer keyed parameters by Python name (STOCHFLOW_TRAINER_*, 500s).
TRAINER_PARAMS = {
    "batch_size": _capi.STOCHFLOW_TRAINER_BATCH_SIZE,
    "max_steps": _capi.STOCHFLOW_TRAINER_MAX_STEPS,
    "max_seconds": _capi.STOCHFLOW_TRAINER_MAX_SECONDS,
    "eval_every": _capi.STOCHFLOW_TRAINER_EVAL_EVERY,
    "patience": _capi.STOCHFLOW_TRAINER_PATIENCE,
    "val_fraction": _capi.STOCHFLOW_TRAINER_VAL_FRACTION,
    "val_subset": _capi.STOCHFLOW_TRAINER_VAL_SUBSET,
    "seed": _capi.STOCHFLOW_TRAINER_SEED,
    "min_delta": _capi.STOCHFLOW_TRAINER_MIN_DELTA,
    "keep_best": _capi.STOCHFLOW_TRAINER_KEEP_BEST,
    "set_horizon": _capi.STOCHFLOW_TRAINER_SET_HORIZON,
    "standardize": _capi.STOCHFLOW_TRAINER_STANDARDIZE,
    "val_block": _capi.STOCHFLOW_TRAINER_VAL_BLOCK,
}
_STATS = {
    "best_nll": _capi.STOCHFLOW_TRAINER_STAT_BEST_NLL,
    "best_step": _capi.STOCHFLOW_TRAINER_STAT_BEST_STEP,
    "final_nll": _capi.STOCHFLOW_TRAINER_STAT_FINAL_NLL,
    "final_se": _capi.STOCHFLOW_TRAINER_STAT_FINAL_SE,
    "steps": _capi.STOCHFLOW_TRAINER_STAT_STEPS,
    "evals": _capi.STOCHFLOW_TRAINER_STAT_EVALS,
    "stop": _capi.STOCHFLOW_TRAINER_STAT_STOP,
    "last_loss": _capi.STOCHFLOW_TRAINER_STAT_LAST_LOSS,
    "train_rows": _capi.STOCHFLOW_TRAINER_STAT_TRAIN_ROWS,
    "val_rows": _capi.STOCHFLOW_TRAINER_STAT_VAL_ROWS,
}
_STOP = {0: None, 1: "steps", 2: "time", 3: "patience", 4: "cancelled"}
_ON_OFF = {True: 1, False: 2}
# the trainer's STANDARDIZE values: 1 per column, 2 the model's map as it is, 3 whitening
_STANDARDIZE = {"diag": 1, "none": 2, "whiten": 3}


def _standardize_code(value):
    """True/"diag", False/"none" or "whiten" as the trainer key's value."""
    if isinstance(value, str):
        if value not in _STANDARDIZE:
            raise ValueError("standardize = %r: True, False, 'diag', 'whiten' or 'none'"
                             % value)
        return _STANDARDIZE[value]
    return _ON_OFF[bool(value)]


def _solver_name(name):
    # the trainer's max_steps is the step budget; the solver's is reached as solver_max_steps
    return "max_steps" if name == "solver_max_steps" else name


class Trainer:
    """A stochflow_trainer handle.

    Trainer(batch_size=256, max_steps=1000, max_seconds=0, eval_every=100, patience=0,
            val_fraction=0, val_subset=256, seed=0, min_delta=0, keep_best=True,
            set_horizon=True, standardize=False, solver="dopri5", **solver_options)

    standardize=True (or "diag") fits the model's per-column standardization on the
    training rows (after the validation split) when the model holds none and has not
    trained, "whiten" a whitening map instead, False or "none" leaves the model's map as
    it is (doc/data.md).
    solver and solver_options (steps, rtol, atol, trace, ...) configure the solver of the
    validation log-densities. fit(model, x, x_val=None, progress=None) trains the model;
    progress(step, loss, val_nll, val_se) is called after every step (val_nll is NaN
    between evaluations) and may return True to stop (CancelledError). After fit,
    .stats holds best_nll, best_step, final_nll (exact, whole validation set), final_se,
    steps, evals, stop ("steps"/"time"/"patience"/"cancelled"), last_loss, train_rows,
    val_rows."""

    def __init__(self, solver="dopri5", **params):
        h = ctypes.c_void_p()
        _call("stochflow_trainer_new", ctypes.byref(h))
        self._h = h
        self._finalizer = weakref.finalize(self, _lib.stochflow_trainer_free, h)
        s = ctypes.c_void_p()
        _call("stochflow_trainer_solver", ctypes.byref(s), h)
        self._solver = s
        params["solver"] = solver
        for name, value in params.items():
            if value is not None:
                self.set_param(name, value)

    def set_param(self, name, value):
        if name in TRAINER_PARAMS:
            if name == "standardize":
                value = _standardize_code(value)
            elif name in ("keep_best", "set_horizon"):
                value = _ON_OFF[bool(value)]
            _call("stochflow_trainer_set_param", self._h, TRAINER_PARAMS[name], float(value))
            return
        key, table = _param(SOLVER_PARAMS, _solver_name(name), "trainer or solver")
        v = _enum(value, table, name) if table else float(value)
        _call("stochflow_solver_set_param", self._solver, key, float(v))

    def get_param(self, name):
        out = ctypes.c_double()
        if name in TRAINER_PARAMS:
            _call("stochflow_trainer_get_param", ctypes.byref(out), self._h, TRAINER_PARAMS[name])
        else:
            key = _param(SOLVER_PARAMS, _solver_name(name), "trainer or solver")[0]
            _call("stochflow_solver_get_param", ctypes.byref(out), self._solver, key)
        return out.value

    def fit(self, model, x, x_val=None, progress=None):
        x = _matrix(x, model.dim)
        xv = None if x_val is None else _matrix(x_val, model.dim, "x_val")
        cb = None
        errors = []
        if progress is not None:
            def trampoline(user, step, loss, val, se):
                try:
                    return 1 if progress(int(step), loss, val, se) else 0
                except BaseException as e:  # noqa: B902 - re-raised below
                    errors.append(e)
                    return 1
            cb = _capi.TRAIN_PROGRESS_FN(trampoline)
        _call("stochflow_trainer_set_progress", self._h,
              ctypes.cast(cb, ctypes.c_void_p) if cb else None, None)
        try:
            _call("stochflow_trainer_fit", self._h, model._h, _ptr(x), x.shape[0], _ptr(xv),
                  0 if xv is None else xv.shape[0])
        except Error:
            if errors:
                raise errors[0]
            raise
        finally:
            _call("stochflow_trainer_set_progress", self._h, None, None)
        return self

    def state_bytes(self):
        """The early-stopping state (best, evaluations since, best weights, step) as
        bytes: with a model checkpoint, a resumed fit stops and ends as the uninterrupted
        one would (doc/training.md)."""
        size = ctypes.c_size_t()
        _call("stochflow_trainer_state_size", ctypes.byref(size), self._h)
        buf = ctypes.create_string_buffer(size.value)
        written = ctypes.c_size_t()
        _call("stochflow_trainer_save_state", ctypes.byref(written), self._h, buf, size.value)
        return buf.raw[:written.value]

    def load_state(self, data):
        """Install a state from state_bytes(); None forgets the current one."""
        if data is None:
            _call("stochflow_trainer_load_state", self._h, None, 0)
            return
        data = bytes(data)
        _call("stochflow_trainer_load_state", self._h, data, len(data))

    @property
    def stats(self):
        out = {}
        for name, key in _STATS.items():
            v = ctypes.c_double()
            _call("stochflow_trainer_stat", ctypes.byref(v), self._h, key)
            out[name] = v.value
        out["stop"] = _STOP.get(int(out["stop"]), int(out["stop"]))
        for k in ("best_step", "steps", "evals", "train_rows", "val_rows"):
            out[k] = int(out[k])
        return out


def _take(fn, *args):
    x = ctypes.POINTER(ctypes.c_float)()
    n, d = ctypes.c_size_t(), ctypes.c_size_t()
    _call(fn, ctypes.byref(x), ctypes.byref(n), ctypes.byref(d), *args)
    try:
        return np.ctypeslib.as_array(x, shape=(n.value, d.value)).copy()
    finally:
        _lib.stochflow_data_free(x)


def read_npy(path, max_bytes=0, max_values=0):
    """An (n, d) float32 array from a .npy file by the library's strict reader
    (doc/data.md); 0 bounds mean 2^30 bytes and 2^28 values."""
    return _take("stochflow_data_read_npy", os.fsencode(path), int(max_bytes), int(max_values))


def read_csv(path, max_bytes=0, max_values=0):
    """An (n, d) float32 array from a .csv file by the library's strict reader."""
    return _take("stochflow_data_read_csv", os.fsencode(path), int(max_bytes), int(max_values))


def parse_npy(data, max_values=0):
    """As read_npy, from bytes."""
    data = bytes(data)
    return _take("stochflow_data_parse_npy", data, len(data), int(max_values))


def parse_csv(data, max_values=0):
    """As read_csv, from bytes (or str, encoded as UTF-8)."""
    data = data.encode() if isinstance(data, str) else bytes(data)
    return _take("stochflow_data_parse_csv", data, len(data), int(max_values))
