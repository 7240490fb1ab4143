"""stochflow - Python bindings for libstochflow (continuous-time normalizing flows trained
with stochastic interpolants).

A thin ctypes layer over the C ABI in include/stochflow.h: every computation happens in
the C library. Arrays are numpy float32, row-major, one point per row: a batch of n points
in d dimensions has shape (n, d). C-contiguous float32 input is passed without a copy;
anything else is converted first. Library failures raise a subclass of stochflow.Error
carrying the C status code and message.

    import stochflow
    m = stochflow.Model(2, hidden=(64, 64), lr=2e-3, seed=1)
    for step in range(2000):
        m.train_step(stochflow.toy_sample("moons", 256, seed=0, stream=step))
    x = m.sample(1000, solver="rk4", steps=50)
    logp = m.log_prob(x)

A Model or Solver may be shared between threads: calls on one handle are serialized by
a lock per object (the C library itself refuses concurrent use of a handle with
STOCHFLOW_E_BUSY), while distinct objects run in parallel (ctypes releases the GIL).
Arrays returned by parameters() and gradients() are views: writing them while another
thread calls the model is not synchronized. Seeds and streams are integers in
[0, 2**64); anything else raises ValueError.

The shared library is found via $STOCHFLOW_LIBRARY, then the install directory recorded
by `meson install`, then <checkout>/build/lib, then the system loader (doc/bindings.md).
"""

import ctypes
import functools
import os
import threading
import weakref

import numpy as np

from . import _capi
from ._capi import *  # noqa: F401,F403  (the header's integer constants)

_lib = _capi.load()

__version__ = _lib.stochflow_version_string().decode()
version_number = _lib.stochflow_version_number()
library_path = _lib._stochflow_path

__all__ = [
    "Model", "Solver", "Error", "toy_sample", "toy_names", "toy_log_density",
    "random_normal", "random_uniform", "png_write", "coupling_assign", "param_bounds", "param_name", "param_key",
    "param_names", "status_string", "__version__",
    "images_load", "images_dequantize", "images_to_float", "images_quantize", "bits_per_dim",
    "images_write_grid", "grad_share", "grad_tree_split",
]

# ---- errors ---------------------------------------------------------------------------


class Error(Exception):
    """A failing libstochflow call. `status` is the negative STOCHFLOW_E_* code and
    `message` the library's detail text (stochflow_last_error_message)."""

    status = None

    def __init__(self, status, message, function=None):
        self.status = status
        self.message = message
        self.function = function
        text = "%s (%d)" % (_lib.stochflow_status_string(status).decode(), status)
        if message:
            text += ": " + message
        if function:
            text = function + ": " + text
        super().__init__(text)


class InvalidArgumentError(Error):
    status = _capi.STOCHFLOW_E_INVALID


class OutOfMemoryError(Error):
    status = _capi.STOCHFLOW_E_NOMEM


class IOFailureError(Error):
    status = _capi.STOCHFLOW_E_IO


class FormatError(Error):
    status = _capi.STOCHFLOW_E_FORMAT


class NonFiniteError(Error):
    status = _capi.STOCHFLOW_E_NONFINITE


class StepUnderflowError(Error):
    status = _capi.STOCHFLOW_E_STEP_UNDERFLOW


class MaxStepsError(Error):
    status = _capi.STOCHFLOW_E_MAX_STEPS


class CancelledError(Error):
    status = _capi.STOCHFLOW_E_CANCELLED


class UnsupportedError(Error):
    status = _capi.STOCHFLOW_E_UNSUPPORTED


class VersionError(Error):
    status = _capi.STOCHFLOW_E_VERSION


class CallbackError(Error):
    status = _capi.STOCHFLOW_E_CALLBACK


class BusyError(Error):
    """Never raised by Model and Solver methods, which serialize calls per handle."""
    status = _capi.STOCHFLOW_E_BUSY


_ERRORS = {cls.status: cls for cls in (
    InvalidArgumentError, OutOfMemoryError, IOFailureError, FormatError, NonFiniteError,
    StepUnderflowError, MaxStepsError, CancelledError, UnsupportedError, VersionError,
    CallbackError, BusyError)}
__all__ += [cls.__name__ for cls in _ERRORS.values()]


def _seed(value, what="seed"):
    """A seed (or stream) as the C library takes it: an integer in [0, 2**64); anything
    else is a ValueError, never a silent wrap-around."""
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("%s must be an integer, got %r" % (what, value))
    v = int(value)
    if not 0 <= v < 2**64:
        raise ValueError("%s must be in [0, 2**64), got %d" % (what, v))
    return v


def _serialized(method):
    """Run a method of a Model or Solver under its handle's lock: the C library refuses a
    handle used by two threads at once (STOCHFLOW_E_BUSY); Python callers wait instead."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


def _check(status, function):
    """Raise the Error subclass for a negative status (message read on this thread)."""
    if status < 0:
        message = _lib.stochflow_last_error_message().decode(errors="replace")
        raise _ERRORS.get(status, Error)(status, message, function)
    return status


def _call(name, *args):
    return _check(getattr(_lib, name)(*args), name)


def status_string(status):
    """Static English text of a status code."""
    return _lib.stochflow_status_string(int(status)).decode()


# ---- array helpers ----------------------------------------------------------------------

_F32P = _capi.c_float_p


def _matrix(x, d, name="x"):
    """x as a C-contiguous float32 (n, d) array: the same object when it already is one
    (zero copy), else a converted copy. Wrong shapes raise ValueError naming the shape."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != d:
        raise ValueError("%s must have shape (n, %d), got %s" % (name, d, tuple(a.shape)))
    if a.shape[0] < 1:
        raise ValueError("%s must hold at least one point, got shape %s" % (name, a.shape))
    _check_finite(a, name)
    return np.ascontiguousarray(a)


def _check_finite(a, name):
    """NonFiniteError naming the first non-finite value's row and column (1-based, as
    the command-line tool says them)."""
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        v = a[row, col]
        raise NonFiniteError(_capi.STOCHFLOW_E_NONFINITE,
                             "%s: %s value at row %d, column %d (data must be finite)"
                             % (name, "NaN" if np.isnan(v) else "infinite", row + 1, col + 1))


def _vector(x, n, name):
    a = np.asarray(x, dtype=np.float32)
    if a.shape != (n,):
        raise ValueError("%s must have shape (%d,), got %s" % (name, n, tuple(a.shape)))
    return np.ascontiguousarray(a)


def _out(out, shape, name="out"):
    """A fresh output array, or the caller's when it is writable C-contiguous float32."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or \
            not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("%s must be a writable C-contiguous float32 numpy array" % name)
    if out.shape != tuple(shape):
        raise ValueError("%s must have shape %s, got %s" % (name, tuple(shape), out.shape))
    return out


def _ptr(a):
    return None if a is None else a.ctypes.data_as(_F32P)


def _cond(model, ctx, labels, n):
    """(ctx, labels) of n rows as C arrays (or None) for a conditional call: ctx (n, k) or
    one row (k,) repeated for every point; labels (n,) int32 or one int (-1 = none)."""
    if ctx is not None:
        k = model.context[0]
        c = np.asarray(ctx, dtype=np.float32)
        if c.ndim == 1 and k > 0 and c.shape[0] == k:
            c = np.broadcast_to(c, (n, k))
        if c.shape != (n, k):
            raise ValueError("ctx must have shape (%d, %d) or (%d,), got %s"
                             % (n, k, k, tuple(c.shape)))
        _check_finite(c.reshape(n, -1) if k else c, "ctx")
        ctx = np.ascontiguousarray(c)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim == 0:
            lab = np.full(n, int(lab), dtype=np.int32)
        if lab.shape != (n,):
            raise ValueError("labels must have shape (%d,), got %s" % (n, tuple(lab.shape)))
        labels = np.ascontiguousarray(lab, dtype=np.int32)
    return ctx, labels


def _iptr(a):
    return None if a is None else a.ctypes.data_as(_capi.c_int32_p)


def _enum(value, table, what):
    if isinstance(value, str):
        try:
            return table[value.lower()]
        except KeyError:
            raise ValueError("unknown %s %r; expected one of %s"
                             % (what, value, ", ".join(sorted(table)))) from None
    return int(value)


_ACTIVATIONS = {"silu": STOCHFLOW_ACT_SILU, "tanh": STOCHFLOW_ACT_TANH,  # noqa: F405
                "relu": STOCHFLOW_ACT_RELU, "softplus": STOCHFLOW_ACT_SOFTPLUS}  # noqa: F405
_INTERPOLANTS = {"trig": STOCHFLOW_INTERP_TRIG, "linear": STOCHFLOW_INTERP_LINEAR}  # noqa: F405
_TIME = {"raw": STOCHFLOW_TIME_RAW, "fourier": STOCHFLOW_TIME_FOURIER}  # noqa: F405
_SOLVERS = {"euler": STOCHFLOW_SOLVER_EULER, "heun": STOCHFLOW_SOLVER_HEUN,  # noqa: F405
            "rk4": STOCHFLOW_SOLVER_RK4, "dopri5": STOCHFLOW_SOLVER_DOPRI5}  # noqa: F405
_TRACES = {"exact": STOCHFLOW_TRACE_EXACT, "hutchinson": STOCHFLOW_TRACE_HUTCHINSON}  # noqa
_PROBES = {"rademacher": STOCHFLOW_PROBE_RADEMACHER,  # noqa: F405
           "gaussian": STOCHFLOW_PROBE_GAUSSIAN}  # noqa: F405
_SCHEDULES = {"constant": STOCHFLOW_LR_CONSTANT, "step": STOCHFLOW_LR_STEP,  # noqa: F405
              "cosine": STOCHFLOW_LR_COSINE}  # noqa: F405
_EVAL_WEIGHTS = {"ema": 1, "live": 2}
_OBJECTIVES = {"velocity": STOCHFLOW_FIELD_VELOCITY, "drift": STOCHFLOW_FIELD_DRIFT,  # noqa
               "score": STOCHFLOW_FIELD_SCORE, "denoiser": STOCHFLOW_FIELD_DENOISER}  # noqa
_GAMMAS = {"zero": STOCHFLOW_GAMMA_ZERO, "brownian": STOCHFLOW_GAMMA_BROWNIAN,  # noqa: F405
           "brownian_scaled": STOCHFLOW_GAMMA_BROWNIAN_SCALED,  # noqa: F405
           "quadratic": STOCHFLOW_GAMMA_QUADRATIC, "sin2": STOCHFLOW_GAMMA_SIN2}  # noqa
_SI_KINDS = {"two_sided": STOCHFLOW_SI_TWO_SIDED, "one_sided": STOCHFLOW_SI_ONE_SIDED,  # noqa
             "mirror": STOCHFLOW_SI_MIRROR}  # noqa: F405
_SDE_METHODS = {"em": STOCHFLOW_SDE_EULER_MARUYAMA, "heun": STOCHFLOW_SDE_HEUN}  # noqa


def _gamma(gamma, field):
    """gamma as "KIND", "brownian:C", (KIND, scale) or None -> (code, scale). None: the
    Brownian gamma for drift/score/denoiser, none for the velocity."""
    if gamma is None:
        return (STOCHFLOW_GAMMA_ZERO if field == STOCHFLOW_FIELD_VELOCITY  # noqa: F405
                else STOCHFLOW_GAMMA_BROWNIAN), 0.0  # noqa: F405
    scale = 0.0
    if isinstance(gamma, (tuple, list)):
        gamma, scale = gamma
    elif isinstance(gamma, str) and ":" in gamma:
        gamma, scale = gamma.split(":", 1)
        if gamma.lower() != "brownian":
            raise ValueError("only the brownian gamma takes a scale, got %r" % (gamma,))
        gamma = "brownian_scaled"
    code = _enum(gamma, _GAMMAS, "gamma")
    if code == STOCHFLOW_GAMMA_BROWNIAN and float(scale) > 0:  # noqa: F405
        code = STOCHFLOW_GAMMA_BROWNIAN_SCALED  # noqa: F405
    return code, float(scale)


class _SDE:
    """An SDE sampler handle set up for a drift model and an optional score model, as the
    CLI's sample --sde / logp --sde (doc/cli.md): the score model's field (score or
    denoiser) and interpolant; without one, the score from the velocity of a gamma-free
    model. With a denoiser or the score from the velocity the first and last steps are
    noise-free (the score is undefined where gamma = 0). guidance: the scale w of a
    conditional model; trace: the likelihood's divergences ("exact" or "hutchinson")."""

    def __init__(self, drift, eps, score_model, method, steps, paths, guidance=0.0,
                 trace="exact", t_end=1.0):
        fd, gd = drift._objective()
        if fd in (STOCHFLOW_FIELD_SCORE, STOCHFLOW_FIELD_DENOISER):  # noqa: F405
            raise ValueError("the model was trained for the score or denoiser: sample from "
                             "the drift (or velocity) model with score_model=this one")
        fs = None
        if score_model is not None:
            fs, _ = score_model._objective()
            if fs not in (STOCHFLOW_FIELD_SCORE, STOCHFLOW_FIELD_DENOISER):  # noqa: F405
                raise ValueError("score_model was not trained for the score or the denoiser")
        elif gd != STOCHFLOW_GAMMA_ZERO and eps > 0:  # noqa: F405
            raise ValueError("the model was trained with a gamma: pass its score_model (the "
                             "score from the velocity needs a gamma-free model)")
        h = ctypes.c_void_p()
        _call("stochflow_sde_new", ctypes.byref(h))
        self._h = h
        self._finalizer = weakref.finalize(self, _lib.stochflow_sde_free, h)
        self._keep = None
        put = lambda k, v: _call("stochflow_sde_set_param", h, k, float(v))  # noqa: E731
        put(STOCHFLOW_PARAM_SDE_METHOD, _enum(method, _SDE_METHODS, "SDE method"))  # noqa
        put(STOCHFLOW_PARAM_SDE_STEPS, int(steps))  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_EPS, float(eps))  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_PATHS, int(paths))  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_GUIDANCE, float(guidance))  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_TRACE, _enum(trace, _TRACES, "trace"))  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_T_END, float(t_end))  # noqa: F405
        velocity = fd == STOCHFLOW_FIELD_VELOCITY and gd != STOCHFLOW_GAMMA_ZERO  # noqa
        put(STOCHFLOW_PARAM_SDE_DRIFT, STOCHFLOW_FIELD_VELOCITY if velocity  # noqa: F405
            else STOCHFLOW_FIELD_DRIFT)  # noqa: F405
        put(STOCHFLOW_PARAM_SDE_SCORE, fs if fs else STOCHFLOW_FIELD_SCORE_FROM_VELOCITY)  # noqa
        owner = score_model if score_model is not None else drift
        if score_model is not None or gd != STOCHFLOW_GAMMA_ZERO:  # noqa: F405
            si = ctypes.c_void_p()
            with owner._lock:
                _call("stochflow_model_sinterp", ctypes.byref(si), owner._h)
            try:
                _call("stochflow_sde_set_interpolant", h, si)
            finally:
                _lib.stochflow_sinterp_free(si)
        if eps > 0 and (fs is None or fs == STOCHFLOW_FIELD_DENOISER):  # noqa: F405
            lo, e = 0.5 / int(steps), float(eps)
            self._keep = _capi.EPS_FN(lambda user, t: e if lo < t < 1.0 - lo else 0.0)
            _call("stochflow_sde_set_eps_schedule", h, self._keep, None)

    def nfe(self):
        v = ctypes.c_double()
        _call("stochflow_sde_stat", ctypes.byref(v), self._h, STOCHFLOW_STAT_NFE)  # noqa
        return int(v.value)
_EMA_WARMUP = {"on": 1, "off": 2}
_TRAIN_TARGETS = {"draw": STOCHFLOW_TRAIN_TARGET_DRAW,  # noqa: F405
                  "batch": STOCHFLOW_TRAIN_TARGET_BATCH}  # noqa: F405
_COUPLINGS = {"independent": STOCHFLOW_COUPLING_INDEPENDENT,  # noqa: F405
              "ot": STOCHFLOW_COUPLING_OT, "sinkhorn": STOCHFLOW_COUPLING_SINKHORN}  # noqa


# Keyed parameters: names, keys, owners and bounds come from the library's one table
# (stochflow_param_count/key_at/name/key/bounds); nothing here lists them again. Enum
# parameters also take these words for their codes (the Python spellings of the
# header's STOCHFLOW_* constants).
_ENUM_WORDS = {"lr_schedule": _SCHEDULES, "ema_warmup": _EMA_WARMUP,
               "eval_weights": _EVAL_WEIGHTS, "coupling": _COUPLINGS, "solver": _SOLVERS,
               "trace": _TRACES, "probe_dist": _PROBES, "train_target": _TRAIN_TARGETS}


def param_names():
    """Every keyed parameter's name, in the library's table order."""
    return [param_name(_lib.stochflow_param_key_at(i))
            for i in range(_lib.stochflow_param_count())]


def param_name(key):
    """Name of a keyed parameter (e.g. 100 -> "lr"); UnsupportedError for an unknown key."""
    name = _lib.stochflow_param_name(int(key))
    if name is None:
        raise UnsupportedError(_capi.STOCHFLOW_E_UNSUPPORTED,
                               "unknown parameter key %d" % int(key), "stochflow_param_name")
    return name.decode()


def param_key(name):
    """Key of a keyed parameter name (e.g. "lr" -> 100); UnsupportedError when unknown."""
    key = ctypes.c_int()
    _call("stochflow_param_key", ctypes.byref(key), str(name).encode())
    return key.value


def _param_tables():
    """{name: (key, enum words or None)} of the model's (100s, 400s) and the solver's
    (200s, 300s) parameters."""
    model, solver = {}, {}
    for name in param_names():
        key = param_key(name)
        (model if key // 100 in (1, 4) else solver)[name] = (key, _ENUM_WORDS.get(name))
    return model, solver


MODEL_PARAMS, SOLVER_PARAMS = _param_tables()


def _param(table, name, kind):
    try:
        return table[name]
    except KeyError:
        raise TypeError("unknown %s parameter %r; known: %s"
                        % (kind, name, ", ".join(sorted(table)))) from None


def param_bounds(name):
    """(lo, hi, default) of a keyed parameter, by name or integer key."""
    key = param_key(name) if isinstance(name, str) else int(name)
    lo, hi, de = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
    _call("stochflow_param_bounds", ctypes.byref(lo), ctypes.byref(hi), ctypes.byref(de), key)
    return lo.value, hi.value, de.value


# ---- U-Net configuration ------------------------------------------------------------------

_UNET_KEYS = ("channels", "height", "width", "base", "mult", "blocks", "attn_mask", "groups")


def _set_unet(cfg, unet):
    """stochflow_config_set_unet from a dict (see Model); unset keys keep the defaults of
    stochflow_unet_options_init (the CLI's), attn_mask the lowest level of mult."""
    unknown = set(unet) - set(_UNET_KEYS)
    if unknown:
        raise TypeError("unknown U-Net setting(s) %s; known: %s"
                        % (", ".join(sorted(unknown)), ", ".join(_UNET_KEYS)))
    missing = [k for k in ("channels", "height", "width") if k not in unet]
    if missing:
        raise TypeError("the U-Net needs %s" % ", ".join(missing))
    mult = [int(v) for v in unet.get("mult", (1, 2, 2))]
    if not 1 <= len(mult) <= STOCHFLOW_UNET_MAX_LEVELS:  # noqa: F405
        raise ValueError("mult must have 1..%d entries, got %d"
                         % (STOCHFLOW_UNET_MAX_LEVELS, len(mult)))  # noqa: F405
    attn = unet.get("attn_mask")
    attn = (1 << (len(mult) - 1)) if attn is None else int(attn)
    o = _capi.UnetOptions()
    _call("stochflow_unet_options_init", ctypes.byref(o), ctypes.sizeof(o))
    o.channels, o.height, o.width = (int(unet[k]) for k in ("channels", "height", "width"))
    o.base = int(unet.get("base", o.base))
    o.n_levels = len(mult)
    for i in range(STOCHFLOW_UNET_MAX_LEVELS):  # noqa: F405
        o.mult[i] = mult[i] if i < len(mult) else 0
    o.blocks = int(unet.get("blocks", o.blocks))
    o.attn_mask = attn
    o.groups = int(unet.get("groups", o.groups))
    _call("stochflow_config_set_unet", cfg, ctypes.byref(o))


def _get_unet(cfg):
    """The U-Net settings of a configuration as the dict _set_unet takes."""
    o = _capi.UnetOptions()
    _call("stochflow_config_unet", ctypes.byref(o), cfg)
    return {"channels": o.channels, "height": o.height, "width": o.width, "base": o.base,
            "mult": tuple(o.mult[:o.n_levels]), "blocks": o.blocks,
            "attn_mask": o.attn_mask, "groups": o.groups}


# ---- model ------------------------------------------------------------------------------


class Model:
    """A velocity network v(t, x), its Adam optimizer and its random stream.

    Model(dim, hidden=(256, 256, 256), activation="silu", interpolant="trig", seed=0,
          threads=None, time_embedding="raw", n_freq=0, n_modes=0, interp_base="linear",
          **tunables)

    interpolant "fourier" is the learnable interpolant (doc/transport.md) with n_modes
    sine modes on top of interp_base ("trig" or "linear").

    objective: None ("velocity", the ODE training) or the field of the stochastic
    interpolant x_t = a x0 + b x1 + gamma z the model learns (doc/sde.md): "velocity",
    "drift", "score", "denoiser". gamma: "zero", "brownian", "brownian:C" (or
    ("brownian", C)), "quadratic", "sin2"; default brownian for drift/score/denoiser.
    antithetic: antithetic pairs of z. si_kind: "two_sided", "one_sided" (x_t = a z + b x1)
    or "mirror". Sample with the SDE: drift.sample(n, sde=eps, score_model=score).

    resmlp: None (the MLP of hidden) or (width, blocks): a residual MLP of that width
    with that many pre-norm residual blocks with LayerNorm (stochflow_config_set_resmlp;
    (256, 2) is the recipe's), or (width, blocks, experts): with that many gated linear
    experts on its output (stochflow_config_set_resmlp_experts; the mixtures' recipe:
    8). hidden is then ignored.

    unet: None (the MLP velocity field) or a dict making the model a convolutional U-Net
    over NCHW images (doc/unet.md): channels, height, width (required; their product must
    equal dim), base=32, mult=(1, 2, 2), blocks=1, attn_mask=None (attention at the
    lowest resolution level; 0 = none; bit l = level l), groups=8. hidden, activation
    and the time embedding are then ignored. A batch is still (n, dim): flatten images
    with x.reshape(n, -1).

    tunables are the model's keyed parameters by name: lr, beta1, beta2, adam_eps,
    weight_decay, grad_clip, ema_decay, lr_schedule ("constant"/"step"/"cosine"; cosine
    needs lr_total_steps, the steps it spans, given with it), lr_decay_every,
    lr_decay_factor, lr_warmup, lr_total_steps, lr_min,
    ema_warmup ("on"/"off": decay min(ema_decay, (1 + s)/(10 + s)) at step s, or constant),
    eval_weights ("ema"/"live"), interp_lr, coupling ("independent"/"ot"/"sinkhorn"),
    sinkhorn_reg, ctx_dropout, train_target ("draw"/"batch": regress on each row's own
    dI/dt, or on its posterior mean over the batch's data rows, lower in variance).

    n_ctx, n_classes: a conditional model v(t, x | c) (doc/conditional.md) taking n_ctx
    context floats per row and/or class labels 0..n_classes-1 (-1 = none). Every data
    method then takes ctx= (n, n_ctx) (or one row) and labels= (n,) (or one int); leaving
    both None is the unconditional field v(t, x | none). The handle is freed when the object is garbage
    collected (and not before: arrays from parameters()/gradients() keep it alive).
    """

    def __init__(self, dim, hidden=(256, 256, 256), activation="silu", interpolant="trig",
                 seed=0, threads=None, time_embedding="raw", n_freq=0, n_modes=0,
                 interp_base="linear", unet=None, n_ctx=0, n_classes=0, objective=None,
                 gamma=None, antithetic=False, si_kind="two_sided", resmlp=None, **tunables):
        hidden = [int(h) for h in hidden]
        cfg = ctypes.c_void_p()
        _call("stochflow_config_new", ctypes.byref(cfg), int(dim))
        try:
            widths = (ctypes.c_size_t * len(hidden))(*hidden)
            _call("stochflow_config_set_hidden", cfg, len(hidden), widths)
            _call("stochflow_config_set_activation", cfg,
                  _enum(activation, _ACTIVATIONS, "activation"))
            _call("stochflow_config_set_time_embedding", cfg,
                  _enum(time_embedding, _TIME, "time embedding"), int(n_freq))
            if isinstance(interpolant, str) and interpolant.lower() == "fourier":
                _call("stochflow_config_set_fourier_interpolant", cfg,
                      _enum(interp_base, _INTERPOLANTS, "interpolant base"), int(n_modes))
            else:
                _call("stochflow_config_set_interpolant", cfg,
                      _enum(interpolant, _INTERPOLANTS, "interpolant"))
            _call("stochflow_config_set_seed", cfg, _seed(seed))
            if objective is not None or gamma is not None or antithetic or \
                    si_kind != "two_sided":
                field = _enum(objective or "velocity", _OBJECTIVES, "objective")
                g, scale = _gamma(gamma, field)
                _call("stochflow_config_set_objective", cfg, field,
                      _enum(si_kind, _SI_KINDS, "si_kind"), g, scale,
                      STOCHFLOW_OBJECTIVE_ANTITHETIC if antithetic else 0)  # noqa: F405
            if resmlp is not None:
                if unet is not None:
                    raise ValueError("resmlp and unet both choose the network: give one")
                if len(resmlp) not in (2, 3):
                    raise ValueError("resmlp: (width, blocks) or (width, blocks, experts)")
                _call("stochflow_config_set_resmlp", cfg, int(resmlp[0]), int(resmlp[1]))
                if len(resmlp) == 3:
                    _call("stochflow_config_set_resmlp_experts", cfg, int(resmlp[2]))
            if unet is not None:
                _set_unet(cfg, unet)
            if n_ctx or n_classes:
                _call("stochflow_config_set_context", cfg, int(n_ctx), int(n_classes))
            handle = ctypes.c_void_p()
            _call("stochflow_model_new", ctypes.byref(handle), cfg)
        finally:
            _lib.stochflow_config_free(cfg)
        self._adopt(handle)
        if threads is not None:
            tunables["threads"] = threads
        # the cosine horizon first: choosing the cosine schedule needs it
        for name in sorted(tunables, key=lambda k: k != "lr_total_steps"):
            self.set_param(name, tunables[name])

    def _adopt(self, handle, horizon_known=False):
        self._h = handle
        self._lock = threading.RLock()  # one call on the handle at a time (doc/threading.md)
        # whether lr_total_steps was chosen (explicitly, or saved in a loaded checkpoint)
        self._horizon_known = horizon_known
        self._d = _lib.stochflow_model_dim(handle)
        self._finalizer = weakref.finalize(self, _lib.stochflow_model_free, handle)

    @classmethod
    def _from_handle(cls, handle):
        m = cls.__new__(cls)
        m._adopt(handle, horizon_known=True)
        return m

    # -- introspection
    @property
    def dim(self):
        """Data dimension d."""
        return self._d

    @property
    @_serialized
    def num_params(self):
        """Number of trainable parameters."""
        return _lib.stochflow_model_num_params(self._h)

    @property
    @_serialized
    def step(self):
        """Number of optimizer updates applied so far."""
        return _lib.stochflow_model_step(self._h)

    @_serialized
    def config(self):
        """The architecture as a dict (dim, hidden, activation, time_embedding, n_freq,
        interpolant, seed, resmlp for a residual MLP, unet for a U-Net), as accepted by
        Model(**config)."""
        cfg = ctypes.c_void_p()
        _call("stochflow_model_config", ctypes.byref(cfg), self._h)
        try:
            n = ctypes.c_size_t()
            _call("stochflow_config_hidden", ctypes.byref(n), None, 0, cfg)
            widths = (ctypes.c_size_t * n.value)()
            _call("stochflow_config_hidden", None, widths, n.value, cfg)
            kind, nf = ctypes.c_int(), ctypes.c_size_t()
            _call("stochflow_config_time_embedding", ctypes.byref(kind), ctypes.byref(nf), cfg)
            kind = kind.value
            name = lambda table, v: next((k for k, x in table.items() if x == v), v)  # noqa
            out = {
                "dim": _lib.stochflow_config_dim(cfg),
                "hidden": tuple(widths),
                "activation": name(_ACTIVATIONS, _lib.stochflow_config_activation(cfg)),
                "time_embedding": name(_TIME, kind),
                "n_freq": nf.value,
                "interpolant": name(dict(_INTERPOLANTS, custom=3, fourier=4),
                                    _lib.stochflow_config_interpolant(cfg)),
                "seed": _lib.stochflow_config_seed(cfg),
            }
            if _lib.stochflow_config_arch(cfg) == STOCHFLOW_ARCH_UNET:  # noqa: F405
                out["unet"] = _get_unet(cfg)
            if _lib.stochflow_config_arch(cfg) == STOCHFLOW_ARCH_RESMLP:  # noqa: F405
                w, b = ctypes.c_size_t(), ctypes.c_size_t()
                _call("stochflow_config_resmlp", ctypes.byref(w), ctypes.byref(b), cfg)
                k = ctypes.c_size_t()
                _call("stochflow_config_resmlp_experts", ctypes.byref(k), cfg)
                out["resmlp"] = (w.value, b.value) + ((k.value,) if k.value else ())
            f, k, g, fl = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
            sc = ctypes.c_double()
            _call("stochflow_config_objective", ctypes.byref(f), ctypes.byref(k), ctypes.byref(g),
                  ctypes.byref(sc), ctypes.byref(fl), cfg)
            if (f.value, k.value, g.value, fl.value) != (STOCHFLOW_FIELD_VELOCITY,  # noqa
                                                         STOCHFLOW_SI_TWO_SIDED,  # noqa
                                                         STOCHFLOW_GAMMA_ZERO, 0):  # noqa
                out["objective"] = name(_OBJECTIVES, f.value)
                out["gamma"] = (name(_GAMMAS, g.value), sc.value) if sc.value > 0 \
                    else name(_GAMMAS, g.value)
                out["antithetic"] = bool(fl.value & STOCHFLOW_OBJECTIVE_ANTITHETIC)  # noqa
                out["si_kind"] = name(_SI_KINDS, k.value)
            if out["interpolant"] == "fourier":
                base, modes = ctypes.c_int(), ctypes.c_size_t()
                _call("stochflow_config_fourier_interpolant", ctypes.byref(base),
                      ctypes.byref(modes), cfg)
                out["interp_base"] = name(_INTERPOLANTS, base.value)
                out["n_modes"] = modes.value
            k, c = ctypes.c_size_t(), ctypes.c_size_t()
            _call("stochflow_config_context", ctypes.byref(k), ctypes.byref(c), cfg)
            if k.value or c.value:
                out["n_ctx"], out["n_classes"] = k.value, c.value
            return out
        finally:
            _lib.stochflow_config_free(cfg)

    @_serialized
    def set_param(self, name, value):
        """Set a keyed parameter by name (see the class docstring); 0 restores the default."""
        key, table = _param(MODEL_PARAMS, name, "model")
        v = _enum(value, table, name) if table else float(value)
        if key == STOCHFLOW_PARAM_LR_SCHEDULE and v == STOCHFLOW_LR_COSINE and \
                not self._horizon_known:  # noqa: F405
            raise ValueError("lr_schedule='cosine' needs its horizon: set lr_total_steps (the "
                             "number of training steps the cosine spans) too")
        _call("stochflow_model_set_param", self._h, key, float(v))
        if key == STOCHFLOW_PARAM_LR_TOTAL_STEPS:  # noqa: F405
            self._horizon_known = True

    @_serialized
    def get_param(self, name):
        """Current value of a keyed parameter (a float)."""
        key = _param(MODEL_PARAMS, name, "model")[0]
        out = ctypes.c_double()
        _call("stochflow_model_get_param", ctypes.byref(out), self._h, key)
        return out.value

    # -- standardization (doc/data.md): the model's map z = (x - shift) / scale
    @_serialized
    def fit_standardization(self, x):
        """Fit shift = column mean, scale = column standard deviation on the rows of x
        (before training); a constant column raises InvalidError naming it."""
        x = _matrix(x, self._d)
        _call("stochflow_model_fit_standardization", self._h, _ptr(x), x.shape[0])

    @_serialized
    def set_standardization(self, shift, scale):
        """Set the map explicitly (d values each, scale > 0), or remove it (None, None)."""
        if shift is None and scale is None:
            _call("stochflow_model_set_standardization", self._h, None, None)
            return
        sh = np.ascontiguousarray(shift, dtype=np.float64).reshape(-1)
        sc = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
        if sh.shape != (self._d,) or sc.shape != (self._d,):
            raise ValueError("shift and scale must have %d values each" % self._d)
        dp = _capi.c_double_p
        _call("stochflow_model_set_standardization", self._h, sh.ctypes.data_as(dp),
              sc.ctypes.data_as(dp))

    @_serialized
    def standardization(self):
        """(shift, scale) as float64 arrays, or None when the model holds no map."""
        sh = np.empty(self._d, dtype=np.float64)
        sc = np.empty(self._d, dtype=np.float64)
        dp = _capi.c_double_p
        rc = _lib.stochflow_model_standardization(sh.ctypes.data_as(dp), sc.ctypes.data_as(dp),
                                                  self._h)
        if rc < 0:
            _call("stochflow_model_standardization", None, None, self._h)  # raises
        return (sh, sc) if rc == 1 else None

    @_serialized
    def fit_whitening(self, x):
        """Fit a whitening map on the rows of x: z = L^-1 ((x - mean) / std), L the
        Cholesky factor of the correlation matrix; a constant column, or one that is a
        linear combination of earlier ones, raises InvalidError naming the columns."""
        x = _matrix(x, self._d)
        _call("stochflow_model_fit_whitening", self._h, _ptr(x), x.shape[0])

    @_serialized
    def set_whitening(self, shift, scale, chol):
        """Set a whitening map explicitly: shift, scale (d values), chol (d x d,
        lower-triangular, positive diagonal). Remove it with set_standardization(None,
        None)."""
        d = self._d
        sh = np.ascontiguousarray(shift, dtype=np.float64).reshape(-1)
        sc = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
        L = np.ascontiguousarray(chol, dtype=np.float64)
        if sh.shape != (d,) or sc.shape != (d,) or L.shape != (d, d):
            raise ValueError("shift and scale must have %d values each, chol shape (%d, %d)"
                             % (d, d, d))
        dp = _capi.c_double_p
        _call("stochflow_model_set_whitening", self._h, sh.ctypes.data_as(dp),
              sc.ctypes.data_as(dp), L.ctypes.data_as(dp))

    @_serialized
    def whitening(self):
        """The whitening factor L (d x d float64), or None when the model holds none (a
        per-column map or no map; standardization() gives shift and scale)."""
        L = np.empty((self._d, self._d), dtype=np.float64)
        rc = _lib.stochflow_model_whitening(L.ctypes.data_as(_capi.c_double_p), self._h)
        if rc < 0:
            _call("stochflow_model_whitening", None, self._h)  # raises
        return L if rc == 1 else None

    # -- the context map of a conditional model: c' = (c - shift) / scale
    def _n_ctx(self):
        n_ctx = ctypes.c_size_t()
        _call("stochflow_model_context", ctypes.byref(n_ctx), None, self._h)
        return n_ctx.value

    @_serialized
    def fit_context_standardization(self, ctx):
        """Fit the context map (column mean and standard deviation) on context rows
        (n, n_ctx); every _ctx call then takes contexts in these units."""
        c = _matrix(ctx, self._n_ctx(), "ctx")
        _call("stochflow_model_fit_context_standardization", self._h, _ptr(c), c.shape[0])

    @_serialized
    def set_context_standardization(self, shift, scale):
        """Set the context map (n_ctx values each), or remove it (None, None)."""
        if shift is None and scale is None:
            _call("stochflow_model_set_context_standardization", self._h, None, None)
            return
        k = self._n_ctx()
        sh = np.ascontiguousarray(shift, dtype=np.float64).reshape(-1)
        sc = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
        if sh.shape != (k,) or sc.shape != (k,):
            raise ValueError("shift and scale must have %d values each" % k)
        dp = _capi.c_double_p
        _call("stochflow_model_set_context_standardization", self._h, sh.ctypes.data_as(dp),
              sc.ctypes.data_as(dp))

    @_serialized
    def context_standardization(self):
        """(shift, scale) of the context map as float64 arrays, or None."""
        k = self._n_ctx()
        sh = np.empty(k, dtype=np.float64)
        sc = np.empty(k, dtype=np.float64)
        dp = _capi.c_double_p
        rc = _lib.stochflow_model_context_standardization(sh.ctypes.data_as(dp),
                                                          sc.ctypes.data_as(dp), self._h)
        if rc < 0:
            _call("stochflow_model_context_standardization", None, None, self._h)  # raises
        return (sh, sc) if rc == 1 else None

    @_serialized
    def standardize(self, x, inverse=False):
        """x mapped into the network's space ((x - shift) / scale, whitened when the model
        holds a whitening map), or back (inverse)."""
        x = _matrix(x, self._d)
        out = np.empty_like(x)
        _call("stochflow_model_standardize", _ptr(out), self._h, _ptr(x), x.shape[0],
              1 if inverse else 0)
        return out

    # -- interpolant and transport
    @_serialized
    def interpolant_eval(self, t):
        """(a(t), b(t), a'(t), b'(t)) of the model's interpolant."""
        out = (ctypes.c_double * 4)()
        _call("stochflow_model_interpolant_eval", out, self._h, float(t))
        return tuple(out)

    @_serialized
    def interpolant_coefficients(self):
        """(alpha, beta): float64 copies of the learned Fourier coefficients."""
        m = ctypes.c_size_t()
        _call("stochflow_model_interpolant_coefficients", None, None, ctypes.byref(m), self._h)
        alpha = np.empty(m.value, dtype=np.float64)
        beta = np.empty(m.value, dtype=np.float64)
        dp = _capi.c_double_p
        _call("stochflow_model_interpolant_coefficients", alpha.ctypes.data_as(dp),
              beta.ctypes.data_as(dp), ctypes.byref(m), self._h)
        return alpha, beta

    @_serialized
    def path_length(self):
        """(running path-length estimate, number of steps averaged)."""
        out, count = ctypes.c_double(), ctypes.c_uint64()
        _call("stochflow_model_path_length", ctypes.byref(out), ctypes.byref(count), self._h)
        return out.value, count.value

    # -- training
    @property
    def context(self):
        """(n_ctx, n_classes) of a conditional model; (0, 0) for an unconditional one."""
        k, c = ctypes.c_size_t(), ctypes.c_size_t()
        _call("stochflow_model_context", ctypes.byref(k), ctypes.byref(c), self._h)
        return k.value, c.value

    def _batch_args(self, x1, x0, t):
        x1 = _matrix(x1, self._d, "x1")
        n = x1.shape[0]
        x0 = None if x0 is None else _matrix(x0, self._d, "x0")
        if x0 is not None and x0.shape[0] != n:
            raise ValueError("x0 must have shape (%d, %d), got %s" % (n, self._d, x0.shape))
        t = None if t is None else _vector(t, n, "t")
        return x1, n, x0, t

    @_serialized
    def _batch_call(self, fname, x1, x0, t, ctx=None, labels=None):
        x1, n, x0, t = self._batch_args(x1, x0, t)
        loss = ctypes.c_double()
        if ctx is None and labels is None:
            _call(fname, ctypes.byref(loss), self._h, _ptr(x1), n, _ptr(x0), _ptr(t))
        else:
            ctx, labels = _cond(self, ctx, labels, n)
            _call(fname + "_ctx", ctypes.byref(loss), self._h, _ptr(x1), _ptr(ctx),
                  _iptr(labels), n, _ptr(x0), _ptr(t))
        return loss.value

    def loss(self, x1, x0=None, t=None, ctx=None, labels=None):
        """Interpolant loss of a batch (n, d) without an update. x0 (n, d) and t (n,) are
        drawn by the library when None."""
        return self._batch_call("stochflow_model_loss", x1, x0, t, ctx, labels)

    def train_step(self, x1, x0=None, t=None, ctx=None, labels=None):
        """One Adam step on the batch x1 (n, d); returns the loss before the update."""
        return self._batch_call("stochflow_model_train_step", x1, x0, t, ctx, labels)

    def compute_gradient(self, x1, x0=None, t=None, ctx=None, labels=None):
        """Overwrite gradients() with dLoss/dparams for the batch; returns the loss."""
        return self._batch_call("stochflow_model_compute_gradient", x1, x0, t, ctx, labels)

    @_serialized
    def apply_gradient(self):
        """Apply clipping, Adam and EMA to whatever gradients() holds; step += 1."""
        _call("stochflow_model_apply_gradient", self._h)

    # -- data-parallel training (doc/distributed.md)
    @_serialized
    def partial_gradient(self, x1, row0, n_global, x0=None, t=None):
        """With grad_block set: overwrite gradients() with the tree sum of the blocks of
        rows [row0, row0 + len(x1)) of a batch of n_global rows (x1 holds only those
        rows; draws keyed by global row); returns that range's loss numerator. The batch
        loss is the tree sum of the processes' numerators over n_global."""
        x1, n, x0, t = self._batch_args(x1, x0, t)
        out = ctypes.c_double()
        _call("stochflow_model_partial_gradient", ctypes.byref(out), self._h, _ptr(x1), n,
              _ptr(x0), _ptr(t), int(row0), int(n_global))
        return out.value

    @_serialized
    def record_loss(self, loss):
        """Record the combined batch loss for the path-length estimate (before
        apply_gradient, after installing a combined gradient)."""
        _call("stochflow_model_record_loss", self._h, float(loss))

    @_serialized
    def _view(self, fname):
        ptr = _F32P()
        count = ctypes.c_size_t()
        _call(fname, ctypes.byref(ptr), ctypes.byref(count), self._h)
        buf = (ctypes.c_float * count.value).from_address(ctypes.addressof(ptr.contents))
        buf._stochflow_model = self  # the array's base chain keeps the model alive
        return np.frombuffer(buf, dtype=np.float32)

    def parameters(self):
        """The flat parameter buffer as a float32 array sharing the model's memory
        (writes go straight into the model; layout in doc/architecture.md)."""
        return self._view("stochflow_model_parameters")

    def gradients(self):
        """The flat gradient buffer as a float32 array sharing the model's memory."""
        return self._view("stochflow_model_gradients")

    # -- evaluation
    @_serialized
    def velocity(self, t, x, out=None, ctx=None, labels=None):
        """v(t, x) (v(t, x | c) given ctx/labels) for a batch x (n, d) at one time t;
        returns (n, d)."""
        x = _matrix(x, self._d)
        out = _out(out, x.shape)
        ctx, labels = _cond(self, ctx, labels, x.shape[0])
        _call("stochflow_model_velocity_ctx", _ptr(out), self._h, float(t), _ptr(x), _ptr(ctx),
              _iptr(labels), x.shape[0])
        return out

    @_serialized
    def velocity_vjp(self, t, x, u, ctx=None, labels=None):
        """u_i^T dv(t, x_i)/dx_i for each row; returns (n, d)."""
        x = _matrix(x, self._d)
        u = _matrix(u, self._d, "u")
        if u.shape != x.shape:
            raise ValueError("u must have shape %s, got %s" % (x.shape, u.shape))
        out = np.empty(x.shape, dtype=np.float32)
        ctx, labels = _cond(self, ctx, labels, x.shape[0])
        _call("stochflow_model_velocity_vjp_ctx", _ptr(out), self._h, float(t), _ptr(x),
              _ptr(ctx), _iptr(labels), _ptr(u), x.shape[0])
        return out

    @_serialized
    def divergence(self, t, x, return_velocity=False, ctx=None, labels=None):
        """Exact div v(t, x_i) for each row, shape (n,) (and v when return_velocity)."""
        x = _matrix(x, self._d)
        div = np.empty(x.shape[0], dtype=np.float32)
        v = np.empty(x.shape, dtype=np.float32) if return_velocity else None
        ctx, labels = _cond(self, ctx, labels, x.shape[0])
        _call("stochflow_model_divergence_ctx", _ptr(div), _ptr(v), self._h, float(t), _ptr(x),
              _ptr(ctx), _iptr(labels), x.shape[0])
        return (div, v) if return_velocity else div

    def _objective(self):
        """(field, gamma code) the model was trained for."""
        cfg = ctypes.c_void_p()
        with self._lock:
            _call("stochflow_model_config", ctypes.byref(cfg), self._h)
        try:
            f, g = ctypes.c_int(), ctypes.c_int()
            _call("stochflow_config_objective", ctypes.byref(f), None, ctypes.byref(g), None,
                  None, cfg)
            return f.value, g.value
        finally:
            _lib.stochflow_config_free(cfg)

    def sample(self, n, solver="dopri5", seed=0, return_log_prob=False, out=None, ctx=None,
               labels=None, sde=None, score_model=None, sde_method="heun", return_nfe=False,
               **options):
        """n samples (n, d) from the model: base draws keyed by seed, integrated from t=0
        to 1. options: steps, rtol, atol, h_init, h_min, max_steps, logp_error, trace,
        probes, probe_dist, guidance. With return_log_prob, also log p(x) (n,) from the
        same pass. ctx/labels: samples of p(x | c) (guided with guidance = w).

        sde=eps: the SDE dX = [b + eps s] dt + sqrt(2 eps) dW instead (doc/sde.md), this
        model the drift (or velocity) model, score_model a model trained for the score or
        the denoiser (None: the score from this gamma-free velocity model), sde_method
        "heun" or "em", steps (default 100), ctx/labels and guidance as for the ODE,
        sde_t_end: no noise (and no score) from that time on (default 1).
        return_nfe: also the number of evaluation times."""
        if sde is not None:
            if return_log_prob:
                raise ValueError("return_log_prob does not apply with sde (see sde_log_prob)")
            n = int(n)
            if n < 1:
                raise ValueError("n must be positive, got %d" % n)
            s = _SDE(self, float(sde), score_model, sde_method, options.pop("steps", 100), 16,
                     options.pop("guidance", 0.0), t_end=options.pop("sde_t_end", 1.0))
            if options:
                raise ValueError("options %s do not apply with sde" % sorted(options))
            x = _out(out, (n, self.dim))
            c, lab = _cond(self, ctx, labels, n)
            sh = score_model._h if score_model is not None else None
            with self._lock:
                if score_model is not None and score_model is not self:
                    with score_model._lock:
                        _call("stochflow_sde_sample_ctx", _ptr(x), s._h, self._h, sh, _ptr(c),
                              _iptr(lab), n, _seed(seed))
                else:
                    _call("stochflow_sde_sample_ctx", _ptr(x), s._h, self._h, sh, _ptr(c),
                          _iptr(lab), n, _seed(seed))
            return (x, s.nfe()) if return_nfe else x
        return Solver(solver=solver, **options).sample(self, n, seed=seed,
                                                       return_log_prob=return_log_prob,
                                                       out=out, ctx=ctx, labels=labels)

    def log_prob(self, x, trace="exact", probes=1, return_se=False, t=1.0, seed=0,
                 solver="dopri5", ctx=None, labels=None, **options):
        """log rho_t(x) for each row of x (n, d); t = 1 is the model density of data.
        trace: "exact" or "hutchinson" (probes per point, seed keys the probes). With
        return_se, also the Hutchinson standard errors (NaN for one probe, 0 exact).
        ctx/labels: log p(x | c) (with guidance != 0: the guided flow's density)."""
        s = Solver(solver=solver, trace=trace, probes=probes, seed=seed, **options)
        return s.log_prob(self, x, t=t, return_se=return_se, ctx=ctx, labels=labels)

    def sde_log_prob(self, x, eps, score_model=None, paths=16, steps=100, seed=0, ctx=None,
                     labels=None, guidance=0.0, trace="exact"):
        """The SDE likelihood estimate of log rho_1(x) for each row of x (doc/sde.md):
        paths backward Euler-Maruyama paths of diffusion eps per point (keyed by seed),
        this model the drift, score_model as for sample(sde=...); ctx/labels: given each
        point's conditioning, guidance w: of the guided SDE; trace "hutchinson": one
        probe per path (for images). Returns (logp, se), se the standard error over each
        point's paths."""
        x = _matrix(x, self.dim)
        n = x.shape[0]
        s = _SDE(self, float(eps), score_model, "em", steps, paths, guidance, trace)
        logp = np.empty(n, dtype=np.float32)
        se = np.empty(n, dtype=np.float32)
        c, lab = _cond(self, ctx, labels, n)
        sh = score_model._h if score_model is not None else None
        with self._lock:
            if score_model is not None and score_model is not self:
                with score_model._lock:
                    _call("stochflow_sde_log_prob_ctx", _ptr(logp), _ptr(se), s._h, self._h,
                          sh, _ptr(x), _ptr(c), _iptr(lab), n, _seed(seed))
            else:
                _call("stochflow_sde_log_prob_ctx", _ptr(logp), _ptr(se), s._h, self._h, sh,
                      _ptr(x), _ptr(c), _iptr(lab), n, _seed(seed))
        return logp, se

    def integrate(self, x, t0, t1, solver="dopri5", return_dlogp=False, ctx=None,
                  labels=None, **options):
        """Integrate the rows of x from t0 to t1; returns the end points (a copy) and, with
        return_dlogp, -integral div v dt along each trajectory."""
        return Solver(solver=solver, **options).integrate(self, x, t0, t1,
                                                          return_dlogp=return_dlogp,
                                                          ctx=ctx, labels=labels)

    # -- persistence
    @_serialized
    def save(self, path):
        """Write a checkpoint atomically (doc/checkpoint-format.md)."""
        _call("stochflow_model_save", self._h, os.fsencode(path))

    @classmethod
    def load(cls, path):
        """A model from a checkpoint written by save() (any language)."""
        h = ctypes.c_void_p()
        _call("stochflow_model_load", ctypes.byref(h), os.fsencode(path))
        return cls._from_handle(h)

    @_serialized
    def to_bytes(self):
        """The checkpoint as bytes."""
        size = ctypes.c_size_t()
        _call("stochflow_model_serialized_size", ctypes.byref(size), self._h)
        buf = ctypes.create_string_buffer(size.value)
        written = ctypes.c_size_t()
        _call("stochflow_model_save_buffer", ctypes.byref(written), buf, size.value, self._h)
        return buf.raw[:written.value]

    @classmethod
    def from_bytes(cls, data):
        """A model from to_bytes() output."""
        data = bytes(data)
        h = ctypes.c_void_p()
        _call("stochflow_model_load_buffer", ctypes.byref(h), data, len(data))
        return cls._from_handle(h)

    def copy(self):
        """An independent copy (through the checkpoint format)."""
        return Model.from_bytes(self.to_bytes())

    def __reduce__(self):
        return (Model.from_bytes, (self.to_bytes(),))

    def __repr__(self):
        c = self.config()
        net = ("resmlp=%s" % (c["resmlp"],)) if "resmlp" in c else ("hidden=%s" % (c["hidden"],))
        return "stochflow.Model(dim=%d, %s, activation=%r, interpolant=%r, step=%d)" % (
            c["dim"], net, c["activation"], c["interpolant"], self.step)


# ---- solver -----------------------------------------------------------------------------


class Solver:
    """ODE integration, sampling and log-density settings (a stochflow_solver handle).

    Solver(solver="dopri5", seed=0, **options) with options steps, rtol, atol, h_init,
    h_min, max_steps, logp_error, trace ("exact"/"hutchinson"), probes, probe_dist
    ("rademacher"/"gaussian"). seed keys the Hutchinson probes.
    """

    def __init__(self, solver="dopri5", seed=0, **options):
        h = ctypes.c_void_p()
        _call("stochflow_solver_new", ctypes.byref(h))
        self._h = h
        self._lock = threading.RLock()  # one call on the handle at a time (doc/threading.md)
        self._finalizer = weakref.finalize(self, _lib.stochflow_solver_free, h)
        options["solver"] = solver
        for name, value in options.items():
            if value is not None:
                self.set_param(name, value)
        _call("stochflow_solver_set_seed", self._h, _seed(seed))

    @_serialized
    def set_param(self, name, value):
        key, table = _param(SOLVER_PARAMS, name, "solver")
        v = _enum(value, table, name) if table else float(value)
        _call("stochflow_solver_set_param", self._h, key, float(v))

    @_serialized
    def get_param(self, name):
        key = _param(SOLVER_PARAMS, name, "solver")[0]
        out = ctypes.c_double()
        _call("stochflow_solver_get_param", ctypes.byref(out), self._h, key)
        return out.value

    @_serialized
    def set_seed(self, seed):
        _call("stochflow_solver_set_seed", self._h, _seed(seed))

    @property
    @_serialized
    def stats(self):
        """Statistics of the last call: nfe, accepted, rejected, t."""
        out = {}
        for name, key in (("nfe", STOCHFLOW_STAT_NFE),  # noqa: F405
                          ("accepted", STOCHFLOW_STAT_ACCEPTED),  # noqa: F405
                          ("rejected", STOCHFLOW_STAT_REJECTED),  # noqa: F405
                          ("t", STOCHFLOW_STAT_T)):  # noqa: F405
            v = ctypes.c_double()
            _call("stochflow_solver_stat", ctypes.byref(v), self._h, key)
            out[name] = v.value
        return out

    def sample(self, model, n, seed=0, return_log_prob=False, out=None, ctx=None, labels=None):
        n = int(n)
        if n < 1:
            raise ValueError("n must be positive, got %d" % n)
        x = _out(out, (n, model.dim))
        logp = np.empty(n, dtype=np.float32) if return_log_prob else None
        ctx, labels = _cond(model, ctx, labels, n)
        with self._lock, model._lock:
            _call("stochflow_solver_sample_ctx", _ptr(x), _ptr(logp), self._h, model._h, _ptr(ctx),
                  _iptr(labels), n, _seed(seed))
        return (x, logp) if return_log_prob else x

    def log_prob(self, model, x, t=1.0, return_se=False, ctx=None, labels=None):
        x = _matrix(x, model.dim)
        n = x.shape[0]
        logp = np.empty(n, dtype=np.float32)
        se = np.empty(n, dtype=np.float32) if return_se else None
        ctx, labels = _cond(model, ctx, labels, n)
        with self._lock, model._lock:
            _call("stochflow_solver_log_prob_ctx", _ptr(logp), _ptr(se), self._h, model._h, _ptr(x),
                  _ptr(ctx), _iptr(labels), n, float(t))
        return (logp, se) if return_se else logp

    def integrate(self, model, x, t0, t1, return_dlogp=False, return_se=False, ctx=None,
                  labels=None):
        x = np.array(_matrix(x, model.dim), dtype=np.float32, order="C", copy=True)
        n = x.shape[0]
        dlogp = np.empty(n, dtype=np.float32) if (return_dlogp or return_se) else None
        se = np.empty(n, dtype=np.float32) if return_se else None
        ctx, labels = _cond(model, ctx, labels, n)
        with self._lock, model._lock:
            _call("stochflow_solver_integrate_ctx", _ptr(dlogp), _ptr(se), self._h, model._h,
                  _ptr(x), _ptr(ctx), _iptr(labels), n, float(t0), float(t1))
        if return_se:
            return x, dlogp, se
        return (x, dlogp) if return_dlogp else x


# ---- utilities --------------------------------------------------------------------------


def grad_tree_split(lo, hi):
    """Split point of node [lo, hi) of the reduction tree (0 for a leaf)."""
    return _lib.stochflow_grad_tree_split(int(lo), int(hi))


def grad_share(n_global, block, rank, size):
    """(row0, rows, active): the rows process `rank` of `size` computes so that its
    partial sum is one node of the tree, and how many processes hold rows."""
    row0, rows, active = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
    _call("stochflow_grad_share", ctypes.byref(row0), ctypes.byref(rows), ctypes.byref(active),
          int(n_global), int(block), int(rank), int(size))
    return row0.value, rows.value, active.value


def toy_names():
    """Names of the built-in 2-D toy datasets."""
    return [_lib.stochflow_toy_name(i).decode() for i in range(_lib.stochflow_toy_count())]


def toy_sample(name, n, seed=0, stream=0, out=None):
    """n points (n, 2) of a built-in toy density, deterministic in (name, seed, stream)."""
    out = _out(out, (int(n), 2))
    _call("stochflow_toy_sample", _ptr(out), name.encode(), int(n), _seed(seed),
          _seed(stream, "stream"))
    return out


def toy_log_density(name, x):
    """(log-density (n,), entropy in nats) of a toy known in closed form."""
    x = _matrix(x, 2)
    logp = np.empty(x.shape[0], dtype=np.float32)
    ent = ctypes.c_double()
    _call("stochflow_toy_log_density", _ptr(logp), ctypes.byref(ent), name.encode(), _ptr(x),
          x.shape[0])
    return logp, ent.value


def coupling_assign(x0, x1, mode="ot", reg=0.0, seed=0):
    """Minibatch coupling of the rows of x0 and x1 (both (n, d)) as used in training:
    (perm, mean cost) with perm[i] the x0 row paired with x1 row i (int64 array (n,))."""
    x1 = np.asarray(x1, dtype=np.float32)
    if x1.ndim != 2:
        raise ValueError("x1 must have shape (n, d), got %s" % (x1.shape,))
    x1 = _matrix(x1, x1.shape[1], "x1")
    x0 = _matrix(x0, x1.shape[1], "x0")
    if x0.shape != x1.shape:
        raise ValueError("x0 must have shape %s, got %s" % (x1.shape, x0.shape))
    n, d = x1.shape
    perm = (ctypes.c_size_t * n)()
    cost = ctypes.c_double()
    _call("stochflow_coupling_assign", perm, ctypes.byref(cost), _ptr(x0), _ptr(x1), n, d,
          _enum(mode, _COUPLINGS, "coupling"), float(reg), _seed(seed))
    return np.array(perm, dtype=np.int64), cost.value


def random_normal(n, seed=0, stream=0):
    """n standard normal float32 draws; element i depends only on (seed, stream, i)."""
    out = np.empty(int(n), dtype=np.float32)
    _call("stochflow_random_normal", _ptr(out), int(n), _seed(seed), _seed(stream, "stream"))
    return out


def random_uniform(n, seed=0, stream=0):
    """n float64 draws in [0, 1); element i depends only on (seed, stream, i), and the
    uniform and normal draws of one (seed, stream) are independent."""
    out = np.empty(int(n), dtype=np.float64)
    _call("stochflow_random_uniform", out.ctypes.data_as(_capi.c_double_p), int(n), int(seed),
          int(stream))
    return out


def png_write(path, pixels):
    """Write uint8 pixels of shape (h, w) (gray), (h, w, 3) (RGB) or (h, w, 4) (RGBA)."""
    p = np.ascontiguousarray(np.asarray(pixels, dtype=np.uint8))
    if p.ndim == 2:
        p = p[:, :, None]
    if p.ndim != 3 or p.shape[2] not in (1, 3, 4):
        raise ValueError("pixels must have shape (h, w), (h, w, 3) or (h, w, 4), got %s"
                         % (np.shape(pixels),))
    _call("stochflow_png_write", os.fsencode(path), p.ctypes.data_as(_capi.c_uint8_p),
          p.shape[1], p.shape[0], p.shape[2])


# ---- image data (doc/images.md) ------------------------------------------------------------


class _ImageBuffer:
    """Owns a pixel buffer returned by stochflow_images_load; freed with the last array."""

    def __init__(self, address):
        self._finalizer = weakref.finalize(self, _lib.stochflow_images_free, address)


def _pixels(pixels, name="pixels"):
    p = np.asarray(pixels)
    if p.dtype != np.uint8:
        raise ValueError("%s must be uint8, got %s" % (name, p.dtype))
    return np.ascontiguousarray(p)


def images_load(source, max_count=0):
    """8-bit images as a uint8 array of shape (n, channels, height, width) (NCHW).
    source: "idx:PATH" (IDX file, raw or gzip) or "pngdir:PATH" (directory of .png files,
    in name order); at most max_count images (0 = all). The array shares the library's
    buffer (no copy), freed when the array is garbage collected."""
    ptr = ctypes.c_void_p()
    n, c, h, w = (ctypes.c_size_t() for _ in range(4))
    _call("stochflow_images_load", ctypes.byref(ptr), ctypes.byref(n), ctypes.byref(c),
          ctypes.byref(h), ctypes.byref(w), os.fsencode(source), int(max_count))
    shape = (n.value, c.value, h.value, w.value)
    total = n.value * c.value * h.value * w.value
    buf = (ctypes.c_uint8 * total).from_address(ptr.value)
    buf._stochflow_owner = _ImageBuffer(ptr.value)  # the array's base chain keeps it alive
    return np.frombuffer(buf, dtype=np.uint8).reshape(shape)


def images_dequantize(pixels, seed=0, stream=0):
    """Uniform dequantization of uint8 pixels (any shape) into float32 in [-1, 1):
    2 (p + u) / 256 - 1, with u ~ U[0, 1) depending only on (seed, stream, flat index)."""
    p = _pixels(pixels)
    out = np.empty(p.shape, dtype=np.float32)
    _call("stochflow_images_dequantize", _ptr(out), p.ctypes.data_as(_capi.c_uint8_p), p.size,
          _seed(seed), _seed(stream, "stream"))
    return out


def images_to_float(pixels):
    """Bin centres of uint8 pixels (any shape) as float32: 2 (p + 0.5) / 256 - 1."""
    p = _pixels(pixels)
    out = np.empty(p.shape, dtype=np.float32)
    _call("stochflow_images_to_float", _ptr(out), p.ctypes.data_as(_capi.c_uint8_p), p.size)
    return out


def images_quantize(x):
    """Floats in [-1, 1] (any shape) back to uint8: clamp(floor((x + 1) 128), 0, 255)."""
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    out = np.empty(a.shape, dtype=np.uint8)
    _call("stochflow_images_quantize", out.ctypes.data_as(_capi.c_uint8_p), _ptr(a), a.size)
    return out


def bits_per_dim(logp, dim):
    """Bits per dimension of log-densities (nats) of dequantized data in [-1, 1]^dim:
    -logp / (dim ln 2) + 7. A scalar for a scalar logp, else a float64 array. dim must be an
    integer >= 1 (ValueError otherwise: the C size would wrap)."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise ValueError("bits_per_dim: dim must be an integer >= 1, got %r" % (dim,))
    if dim < 1:
        raise ValueError("bits_per_dim: dim must be >= 1, got %d" % dim)
    if np.ndim(logp) == 0:
        return _lib.stochflow_bits_per_dim(float(logp), int(dim))
    a = np.asarray(logp, dtype=np.float64)
    return np.array([_lib.stochflow_bits_per_dim(float(v), int(dim)) for v in a.flat],
                    dtype=np.float64).reshape(a.shape)


def images_write_grid(path, images, ncols=0):
    """Write float images in [-1, 1] of shape (n, c, h, w) (c = 1 or 3) or (n, h, w) as one
    PNG grid, ncols per row (0 = ceil(sqrt(n))), with 2-pixel mid-gray borders."""
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, None, :, :]
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError("images must have shape (n, c, h, w) with c in (1, 3) or (n, h, w), "
                         "got %s" % (np.shape(images),))
    a = np.ascontiguousarray(a)
    n, c, h, w = a.shape
    _call("stochflow_images_write_grid", os.fsencode(path), _ptr(a), n, c, h, w, int(ncols))


# ---- the C trainer and data readers (doc/training.md, doc/data.md) ----------------------

from .training import Trainer, read_npy, read_csv, parse_npy, parse_csv  # noqa: E402

__all__ += ["Trainer", "read_npy", "read_csv", "parse_npy", "parse_csv"]

from .conditional import ConditionalFlow  # noqa: E402  (uses Model above)

__all__ += ["ConditionalFlow"]
