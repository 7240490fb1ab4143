"""Low-level ctypes view of the C ABI declared in include/stochflow.h.

Nothing here reimplements library behaviour: this module only finds the shared library,
declares the prototypes and mirrors the header's integer constants. The prototype table
is checked against the header by bindings/check_symbols.py (run by ``meson test``).
"""

import ctypes
import ctypes.util
import os

c_int = ctypes.c_int
c_size_t = ctypes.c_size_t
c_uint64 = ctypes.c_uint64
c_uint32 = ctypes.c_uint32
c_double = ctypes.c_double
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
P = ctypes.POINTER
c_float_p = P(ctypes.c_float)
c_double_p = P(ctypes.c_double)
c_size_t_p = P(ctypes.c_size_t)
c_uint8_p = P(ctypes.c_uint8)

# Opaque handles travel as void pointers; callbacks are not bound (see doc/bindings.md).
HANDLE = c_void_p
HANDLE_P = P(c_void_p)

# name -> (restype, argtypes), in header order.
PROTOTYPES = {
    "stochflow_status_string": (c_char_p, [c_int]),
    "stochflow_last_error_message": (c_char_p, []),
    "stochflow_version_string": (c_char_p, []),
    "stochflow_version_number": (c_int, []),
    "stochflow_param_bounds": (c_int, [c_double_p, c_double_p, c_double_p, c_int]),
    "stochflow_param_name": (c_char_p, [c_int]),
    "stochflow_param_key": (c_int, [P(c_int), c_char_p]),
    "stochflow_param_count": (c_size_t, []),
    "stochflow_param_key_at": (c_int, [c_size_t]),
    "stochflow_config_new": (c_int, [HANDLE_P, c_size_t]),
    "stochflow_config_free": (None, [HANDLE]),
    "stochflow_config_set_hidden": (c_int, [HANDLE, c_size_t, c_size_t_p]),
    "stochflow_config_set_activation": (c_int, [HANDLE, c_int]),
    "stochflow_config_set_time_embedding": (c_int, [HANDLE, c_int, c_size_t]),
    "stochflow_config_set_interpolant": (c_int, [HANDLE, c_int]),
    "stochflow_config_set_seed": (c_int, [HANDLE, c_uint64]),
    "stochflow_config_dim": (c_size_t, [HANDLE]),
    "stochflow_config_hidden": (c_size_t, [HANDLE, c_size_t_p, c_size_t]),
    "stochflow_config_activation": (c_int, [HANDLE]),
    "stochflow_config_time_embedding": (c_int, [HANDLE, c_size_t_p]),
    "stochflow_config_interpolant": (c_int, [HANDLE]),
    "stochflow_config_seed": (c_uint64, [HANDLE]),
    "stochflow_model_new": (c_int, [HANDLE_P, HANDLE]),
    "stochflow_model_free": (None, [HANDLE]),
    "stochflow_model_config": (c_int, [HANDLE_P, HANDLE]),
    "stochflow_model_dim": (c_size_t, [HANDLE]),
    "stochflow_model_num_params": (c_size_t, [HANDLE]),
    "stochflow_model_step": (c_uint64, [HANDLE]),
    "stochflow_model_set_param": (c_int, [HANDLE, c_int, c_double]),
    "stochflow_model_get_param": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_model_loss": (c_int, [c_double_p, HANDLE, c_float_p, c_size_t, c_float_p,
                                     c_float_p]),
    "stochflow_model_train_step": (c_int, [c_double_p, HANDLE, c_float_p, c_size_t, c_float_p,
                                           c_float_p]),
    "stochflow_model_compute_gradient": (c_int, [c_double_p, HANDLE, c_float_p, c_size_t,
                                                 c_float_p, c_float_p]),
    "stochflow_model_apply_gradient": (c_int, [HANDLE]),
    "stochflow_model_parameters": (c_int, [P(c_float_p), c_size_t_p, HANDLE]),
    "stochflow_model_gradients": (c_int, [P(c_float_p), c_size_t_p, HANDLE]),
    "stochflow_model_velocity": (c_int, [c_float_p, HANDLE, c_double, c_float_p, c_size_t]),
    "stochflow_model_velocity_vjp": (c_int, [c_float_p, HANDLE, c_double, c_float_p, c_float_p,
                                             c_size_t]),
    "stochflow_model_divergence": (c_int, [c_float_p, c_float_p, HANDLE, c_double, c_float_p,
                                           c_size_t]),
    "stochflow_model_save": (c_int, [HANDLE, c_char_p]),
    "stochflow_model_load": (c_int, [HANDLE_P, c_char_p]),
    "stochflow_model_serialized_size": (c_int, [c_size_t_p, HANDLE]),
    "stochflow_model_save_buffer": (c_int, [c_size_t_p, HANDLE, c_void_p, c_size_t]),
    "stochflow_model_load_buffer": (c_int, [HANDLE_P, c_void_p, c_size_t]),
    "stochflow_solver_new": (c_int, [HANDLE_P]),
    "stochflow_solver_free": (None, [HANDLE]),
    "stochflow_solver_set_param": (c_int, [HANDLE, c_int, c_double]),
    "stochflow_solver_get_param": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_solver_set_seed": (c_int, [HANDLE, c_uint64]),
    "stochflow_solver_stat": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_solver_integrate": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, c_float_p,
                                           c_size_t, c_double, c_double]),
    "stochflow_solver_log_prob": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, c_float_p,
                                          c_size_t, c_double]),
    "stochflow_solver_sample": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, c_size_t,
                                        c_uint64]),
    # issue 9: learnable interpolants, minibatch couplings
    "stochflow_config_set_fourier_interpolant": (c_int, [HANDLE, c_int, c_size_t]),
    "stochflow_config_fourier_interpolant": (c_int, [HANDLE, P(c_int), c_size_t_p]),
    "stochflow_model_interpolant_coefficients": (c_int, [c_double_p, c_double_p, c_size_t_p,
                                                         HANDLE]),
    "stochflow_model_interpolant_eval": (c_int, [c_double_p, HANDLE, c_double]),
    "stochflow_model_path_length": (c_int, [c_double_p, P(c_uint64), HANDLE]),
    "stochflow_coupling_assign": (c_int, [c_size_t_p, c_double_p, c_float_p, c_float_p,
                                          c_size_t, c_size_t, c_int, c_double, c_uint64]),
    "stochflow_random_normal": (c_int, [c_float_p, c_size_t, c_uint64, c_uint64]),
    "stochflow_toy_sample": (c_int, [c_float_p, c_char_p, c_size_t, c_uint64, c_uint64]),
    "stochflow_toy_count": (c_size_t, []),
    "stochflow_toy_name": (c_char_p, [c_size_t]),
    "stochflow_toy_log_density": (c_int, [c_float_p, c_double_p, c_char_p, c_float_p,
                                          c_size_t]),
    "stochflow_png_write": (c_int, [c_char_p, c_uint8_p, c_uint32, c_uint32, c_int]),
    # issue 8: U-Net configuration, image data, bits/dim
    "stochflow_config_set_unet": (c_int, [HANDLE, c_size_t, c_size_t, c_size_t, c_size_t,
                                          c_size_t, c_size_t_p, c_size_t, c_uint32, c_size_t]),
    "stochflow_config_arch": (c_int, [HANDLE]),
    "stochflow_config_unet": (c_int, [c_size_t_p, c_size_t_p, c_size_t_p, c_size_t_p,
                                      c_size_t_p, c_size_t_p, c_size_t_p, P(c_uint32),
                                      c_size_t_p, HANDLE]),
    "stochflow_images_load": (c_int, [P(c_void_p), c_size_t_p, c_size_t_p, c_size_t_p,
                                      c_size_t_p, c_char_p, c_size_t]),
    "stochflow_images_load_limited": (c_int, [P(c_void_p), c_size_t_p, c_size_t_p,
                                              c_size_t_p, c_size_t_p, c_char_p, c_size_t,
                                              c_size_t]),
    "stochflow_images_free": (None, [c_void_p]),
    "stochflow_images_dequantize": (c_int, [c_float_p, c_uint8_p, c_size_t, c_uint64,
                                            c_uint64]),
    "stochflow_images_to_float": (c_int, [c_float_p, c_uint8_p, c_size_t]),
    "stochflow_images_quantize": (c_int, [c_uint8_p, c_float_p, c_size_t]),
    "stochflow_bits_per_dim": (c_double, [c_double, c_size_t]),
    "stochflow_images_write_grid": (c_int, [c_char_p, c_float_p, c_size_t, c_size_t, c_size_t,
                                            c_size_t, c_size_t]),
}

# Header functions deliberately not bound (they take C callbacks); checked by
# bindings/check_symbols.py so that a new header function is a conscious decision.
NOT_BOUND = (
    "stochflow_config_set_schedule",
    "stochflow_model_set_schedule",
    "stochflow_solver_set_base_logpdf",
    "stochflow_solver_set_progress",
    "stochflow_solver_integrate_fn",
    "stochflow_solver_log_prob_fn",
    "stochflow_solver_sample_fn",
)

# Integer constants of the header (checked against it by bindings/check_symbols.py).
CONSTANTS = {
    "STOCHFLOW_OK": 0,
    "STOCHFLOW_E_INVALID": -1,
    "STOCHFLOW_E_NOMEM": -2,
    "STOCHFLOW_E_IO": -3,
    "STOCHFLOW_E_FORMAT": -4,
    "STOCHFLOW_E_NONFINITE": -5,
    "STOCHFLOW_E_STEP_UNDERFLOW": -6,
    "STOCHFLOW_E_MAX_STEPS": -7,
    "STOCHFLOW_E_CANCELLED": -8,
    "STOCHFLOW_E_UNSUPPORTED": -9,
    "STOCHFLOW_E_VERSION": -10,
    "STOCHFLOW_E_CALLBACK": -11,
    "STOCHFLOW_ACT_SILU": 1,
    "STOCHFLOW_ACT_TANH": 2,
    "STOCHFLOW_ACT_RELU": 3,
    "STOCHFLOW_ACT_SOFTPLUS": 4,
    "STOCHFLOW_TIME_RAW": 1,
    "STOCHFLOW_TIME_FOURIER": 2,
    "STOCHFLOW_INTERP_TRIG": 1,
    "STOCHFLOW_INTERP_LINEAR": 2,
    "STOCHFLOW_INTERP_CUSTOM": 3,
    "STOCHFLOW_SOLVER_EULER": 1,
    "STOCHFLOW_SOLVER_HEUN": 2,
    "STOCHFLOW_SOLVER_RK4": 3,
    "STOCHFLOW_SOLVER_DOPRI5": 4,
    "STOCHFLOW_TRACE_EXACT": 1,
    "STOCHFLOW_TRACE_HUTCHINSON": 2,
    "STOCHFLOW_PROBE_RADEMACHER": 1,
    "STOCHFLOW_PROBE_GAUSSIAN": 2,
    "STOCHFLOW_LR_CONSTANT": 1,
    "STOCHFLOW_LR_STEP": 2,
    "STOCHFLOW_LR_COSINE": 3,
    "STOCHFLOW_PARAM_LR": 100,
    "STOCHFLOW_PARAM_BETA1": 101,
    "STOCHFLOW_PARAM_BETA2": 102,
    "STOCHFLOW_PARAM_ADAM_EPS": 103,
    "STOCHFLOW_PARAM_WEIGHT_DECAY": 104,
    "STOCHFLOW_PARAM_GRAD_CLIP": 105,
    "STOCHFLOW_PARAM_EMA_DECAY": 106,
    "STOCHFLOW_PARAM_LR_SCHEDULE": 107,
    "STOCHFLOW_PARAM_LR_DECAY_EVERY": 108,
    "STOCHFLOW_PARAM_LR_DECAY_FACTOR": 109,
    "STOCHFLOW_PARAM_LR_WARMUP": 110,
    "STOCHFLOW_PARAM_LR_TOTAL_STEPS": 111,
    "STOCHFLOW_PARAM_LR_MIN": 112,
    "STOCHFLOW_PARAM_EMA_WARMUP": 116,
    "STOCHFLOW_PARAM_SOLVER": 200,
    "STOCHFLOW_PARAM_STEPS": 201,
    "STOCHFLOW_PARAM_RTOL": 202,
    "STOCHFLOW_PARAM_ATOL": 203,
    "STOCHFLOW_PARAM_H_INIT": 204,
    "STOCHFLOW_PARAM_H_MIN": 205,
    "STOCHFLOW_PARAM_MAX_STEPS": 206,
    "STOCHFLOW_PARAM_LOGP_ERROR": 207,
    "STOCHFLOW_PARAM_TRACE": 300,
    "STOCHFLOW_PARAM_PROBES": 301,
    "STOCHFLOW_PARAM_PROBE_DIST": 302,
    "STOCHFLOW_PARAM_THREADS": 400,
    "STOCHFLOW_PARAM_EVAL_WEIGHTS": 401,
    "STOCHFLOW_INTERP_FOURIER": 4,
    "STOCHFLOW_COUPLING_INDEPENDENT": 1,
    "STOCHFLOW_COUPLING_OT": 2,
    "STOCHFLOW_COUPLING_SINKHORN": 3,
    "STOCHFLOW_PARAM_INTERP_LR": 113,
    "STOCHFLOW_PARAM_COUPLING": 114,
    "STOCHFLOW_PARAM_SINKHORN_REG": 115,
    "STOCHFLOW_STAT_NFE": 1,
    "STOCHFLOW_STAT_ACCEPTED": 2,
    "STOCHFLOW_STAT_REJECTED": 3,
    "STOCHFLOW_STAT_T": 4,
    "STOCHFLOW_ARCH_MLP": 1,
    "STOCHFLOW_ARCH_UNET": 2,
    "STOCHFLOW_UNET_MAX_LEVELS": 6,
}
globals().update(CONSTANTS)
__all__ = list(CONSTANTS)  # what `from ._capi import *` re-exports


def _candidates():
    """Library paths to try, in order, as (description, path-or-name) pairs."""
    out = []
    env = os.environ.get("STOCHFLOW_LIBRARY")
    if env:
        out.append(("$STOCHFLOW_LIBRARY", env))
        return out  # an explicit choice is never silently replaced
    here = os.path.dirname(os.path.abspath(__file__))
    # Installed by `meson install`: _install_paths.py records the library directory.
    try:
        from . import _install_paths  # generated at install time
        out.append(("install libdir", os.path.join(_install_paths.LIBDIR, "libstochflow.so.0")))
    except ImportError:
        pass
    # Source checkout: bindings/python/stochflow -> <repo>/build/lib (README's build dir).
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.exists(os.path.join(repo, "include", "stochflow.h")):
        out.append(("build tree", os.path.join(repo, "build", "lib", "libstochflow.so.0")))
    found = ctypes.util.find_library("stochflow")
    if found:
        out.append(("system loader", found))
    out.append(("system loader", "libstochflow.so.0"))
    return out


def load():
    """Find, open and prototype the C library; raises ImportError listing what was tried."""
    tried = []
    for how, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("%s: %s (missing)" % (how, path))
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s: %s (%s)" % (how, path, e))
            continue
        missing = [name for name in PROTOTYPES if not hasattr(lib, name)]
        if missing:
            tried.append("%s: %s (lacks %s)" % (how, path, ", ".join(missing[:3])))
            continue
        for name, (restype, argtypes) in PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        lib._stochflow_path = path
        return lib
    raise ImportError("stochflow: cannot load libstochflow; set STOCHFLOW_LIBRARY to its path. "
                      "Tried: " + "; ".join(tried))
