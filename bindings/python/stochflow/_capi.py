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
c_int32_p = P(ctypes.c_int32)

# Opaque handles travel as void pointers; callbacks are not bound (see doc/bindings.md).
HANDLE = c_void_p
HANDLE_P = P(c_void_p)

UNET_MAX_LEVELS = 6  # STOCHFLOW_UNET_MAX_LEVELS


class UnetOptions(ctypes.Structure):
    """stochflow_unet_options, field for field (fill with stochflow_unet_options_init)."""
    _fields_ = [
        ("size", c_size_t),
        ("channels", c_size_t),
        ("height", c_size_t),
        ("width", c_size_t),
        ("base", c_size_t),
        ("n_levels", c_size_t),
        ("mult", c_size_t * UNET_MAX_LEVELS),
        ("blocks", c_size_t),
        ("attn_mask", c_uint32),
        ("reserved32", c_uint32),
        ("groups", c_size_t),
        ("reserved", c_uint64 * 4),
    ]

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
    "stochflow_config_hidden": (c_int, [c_size_t_p, c_size_t_p, c_size_t, HANDLE]),
    "stochflow_config_activation": (c_int, [HANDLE]),
    "stochflow_config_time_embedding": (c_int, [P(c_int), c_size_t_p, HANDLE]),
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
    "stochflow_model_save_buffer": (c_int, [c_size_t_p, c_void_p, c_size_t, HANDLE]),
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
    "stochflow_config_set_fourier_interpolant": (c_int, [HANDLE, c_int, c_size_t]),
    "stochflow_config_fourier_interpolant": (c_int, [P(c_int), c_size_t_p, HANDLE]),
    "stochflow_model_interpolant_coefficients": (c_int, [c_double_p, c_double_p, c_size_t_p,
                                                         HANDLE]),
    "stochflow_model_interpolant_eval": (c_int, [c_double_p, HANDLE, c_double]),
    "stochflow_model_path_length": (c_int, [c_double_p, P(c_uint64), HANDLE]),
    "stochflow_coupling_assign": (c_int, [c_size_t_p, c_double_p, c_float_p, c_float_p,
                                          c_size_t, c_size_t, c_int, c_double, c_uint64]),
    "stochflow_random_normal": (c_int, [c_float_p, c_size_t, c_uint64, c_uint64]),
    "stochflow_random_uniform": (c_int, [c_double_p, c_size_t, c_uint64, c_uint64]),
    "stochflow_toy_sample": (c_int, [c_float_p, c_char_p, c_size_t, c_uint64, c_uint64]),
    "stochflow_toy_count": (c_size_t, []),
    "stochflow_toy_name": (c_char_p, [c_size_t]),
    "stochflow_toy_log_density": (c_int, [c_float_p, c_double_p, c_char_p, c_float_p,
                                          c_size_t]),
    "stochflow_png_write": (c_int, [c_char_p, c_uint8_p, c_uint32, c_uint32, c_int]),
    # U-Net configuration, image data, bits/dim
    "stochflow_unet_options_init": (c_int, [P(UnetOptions), c_size_t]),
    "stochflow_config_set_unet": (c_int, [HANDLE, P(UnetOptions)]),
    "stochflow_config_arch": (c_int, [HANDLE]),
    "stochflow_config_set_resmlp": (c_int, [HANDLE, c_size_t, c_size_t]),
    "stochflow_config_resmlp": (c_int, [c_size_t_p, c_size_t_p, HANDLE]),
    "stochflow_config_set_resmlp_experts": (c_int, [HANDLE, c_size_t]),
    "stochflow_config_resmlp_experts": (c_int, [c_size_t_p, HANDLE]),
    "stochflow_config_unet": (c_int, [P(UnetOptions), HANDLE]),
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
    # data readers and the trainer (doc/data.md, doc/training.md)
    "stochflow_data_parse_npy": (c_int, [P(c_float_p), c_size_t_p, c_size_t_p, c_void_p,
                                         c_size_t, c_size_t]),
    "stochflow_data_parse_csv": (c_int, [P(c_float_p), c_size_t_p, c_size_t_p, c_void_p,
                                         c_size_t, c_size_t]),
    "stochflow_data_read_npy": (c_int, [P(c_float_p), c_size_t_p, c_size_t_p, c_char_p,
                                        c_size_t, c_size_t]),
    "stochflow_data_read_csv": (c_int, [P(c_float_p), c_size_t_p, c_size_t_p, c_char_p,
                                        c_size_t, c_size_t]),
    "stochflow_data_free": (None, [c_float_p]),
    "stochflow_trainer_new": (c_int, [HANDLE_P]),
    "stochflow_trainer_free": (None, [HANDLE]),
    "stochflow_trainer_set_param": (c_int, [HANDLE, c_int, c_double]),
    "stochflow_trainer_get_param": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_trainer_param_bounds": (c_int, [c_double_p, c_double_p, c_double_p, c_int]),
    "stochflow_trainer_set_progress": (c_int, [HANDLE, c_void_p, c_void_p]),
    "stochflow_trainer_solver": (c_int, [HANDLE_P, HANDLE]),
    "stochflow_trainer_stat": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_trainer_fit": (c_int, [HANDLE, HANDLE, c_float_p, c_size_t, c_float_p,
                                      c_size_t]),
    "stochflow_trainer_state_size": (c_int, [c_size_t_p, HANDLE]),
    "stochflow_trainer_save_state": (c_int, [c_size_t_p, HANDLE, c_void_p, c_size_t]),
    "stochflow_trainer_load_state": (c_int, [HANDLE, c_void_p, c_size_t]),
    # stochastic interpolants and SDE sampling (doc/sde.md)
    "stochflow_gamma_eval": (c_int, [c_double_p, c_int, c_double, c_double]),
    "stochflow_sinterp_new": (c_int, [HANDLE_P, c_int, c_int, c_int, c_double]),
    "stochflow_sinterp_free": (None, [HANDLE]),
    "stochflow_sinterp_eval": (c_int, [c_double_p, HANDLE, c_double]),
    "stochflow_sinterp_point": (c_int, [c_float_p, c_float_p, HANDLE, c_int, c_double_p,
                                        c_float_p, c_float_p, c_float_p, c_size_t, c_size_t,
                                        c_int]),
    "stochflow_sinterp_loss": (c_int, [c_double_p, c_float_p, HANDLE, c_int, c_double_p,
                                       c_float_p, c_float_p, c_float_p, c_float_p, c_size_t,
                                       c_size_t, c_int, c_double]),
    "stochflow_score_from_velocity": (c_int, [c_float_p, c_float_p, c_float_p, c_float_p,
                                              c_float_p, c_size_t, c_size_t, c_double_p]),
    "stochflow_sde_new": (c_int, [HANDLE_P]),
    "stochflow_sde_free": (None, [HANDLE]),
    "stochflow_sde_set_param": (c_int, [HANDLE, c_int, c_double]),
    "stochflow_sde_get_param": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_sde_param_bounds": (c_int, [c_double_p, c_double_p, c_double_p, c_int]),
    "stochflow_sde_set_interpolant": (c_int, [HANDLE, HANDLE]),
    "stochflow_sde_stat": (c_int, [c_double_p, HANDLE, c_int]),
    "stochflow_sde_sample": (c_int, [c_float_p, HANDLE, HANDLE, HANDLE, c_size_t, c_uint64]),
    "stochflow_sde_log_prob": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, HANDLE, c_float_p,
                                       c_size_t, c_uint64]),
    "stochflow_sde_sample_ctx": (c_int, [c_float_p, HANDLE, HANDLE, HANDLE, c_float_p, c_int32_p,
                                         c_size_t, c_uint64]),
    "stochflow_sde_log_prob_ctx": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, HANDLE,
                                           c_float_p, c_float_p, c_int32_p, c_size_t,
                                           c_uint64]),
    # conditional models (doc/conditional.md)
    "stochflow_config_set_context": (c_int, [HANDLE, c_size_t, c_size_t]),
    "stochflow_config_context": (c_int, [c_size_t_p, c_size_t_p, HANDLE]),
    "stochflow_model_context": (c_int, [c_size_t_p, c_size_t_p, HANDLE]),
    "stochflow_model_train_step_ctx": (c_int, [c_double_p, HANDLE, c_float_p, c_float_p,
                                               c_int32_p, c_size_t, c_float_p, c_float_p]),
    "stochflow_model_loss_ctx": (c_int, [c_double_p, HANDLE, c_float_p, c_float_p, c_int32_p,
                                         c_size_t, c_float_p, c_float_p]),
    "stochflow_model_compute_gradient_ctx": (c_int, [c_double_p, HANDLE, c_float_p, c_float_p,
                                                     c_int32_p, c_size_t, c_float_p,
                                                     c_float_p]),
    "stochflow_model_velocity_ctx": (c_int, [c_float_p, HANDLE, c_double, c_float_p, c_float_p,
                                             c_int32_p, c_size_t]),
    "stochflow_model_divergence_ctx": (c_int, [c_float_p, c_float_p, HANDLE, c_double,
                                               c_float_p, c_float_p, c_int32_p, c_size_t]),
    "stochflow_model_velocity_vjp_ctx": (c_int, [c_float_p, HANDLE, c_double, c_float_p,
                                                 c_float_p, c_int32_p, c_float_p, c_size_t]),
    "stochflow_solver_sample_ctx": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, c_float_p,
                                            c_int32_p, c_size_t, c_uint64]),
    "stochflow_solver_log_prob_ctx": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE, c_float_p,
                                              c_float_p, c_int32_p, c_size_t, c_double]),
    "stochflow_solver_integrate_ctx": (c_int, [c_float_p, c_float_p, HANDLE, HANDLE,
                                               c_float_p, c_float_p, c_int32_p, c_size_t,
                                               c_double, c_double]),
    # data-parallel training (doc/distributed.md)
    "stochflow_grad_tree_split": (c_size_t, [c_size_t, c_size_t]),
    "stochflow_grad_share": (c_int, [c_size_t_p, c_size_t_p, c_size_t_p, c_size_t, c_size_t,
                                     c_size_t, c_size_t]),
    "stochflow_model_partial_gradient": (c_int, [c_double_p, HANDLE, c_float_p, c_size_t,
                                                 c_float_p, c_float_p, c_size_t, c_size_t]),
    "stochflow_model_record_loss": (c_int, [HANDLE, c_double]),
    "stochflow_sde_set_eps_schedule": (c_int, [HANDLE, c_void_p, c_void_p]),
    # stochastic interpolants: training (doc/sde.md)
    "stochflow_config_set_objective": (c_int, [HANDLE, c_int, c_int, c_int, c_double, c_int]),
    "stochflow_config_objective": (c_int, [P(c_int), P(c_int), P(c_int), c_double_p, P(c_int),
                                           HANDLE]),
    "stochflow_model_sinterp": (c_int, [HANDLE_P, HANDLE]),
    "stochflow_model_fit_standardization": (c_int, [HANDLE, c_float_p, c_size_t]),
    "stochflow_model_set_standardization": (c_int, [HANDLE, c_double_p, c_double_p]),
    "stochflow_model_standardization": (c_int, [c_double_p, c_double_p, HANDLE]),
    "stochflow_model_standardize": (c_int, [c_float_p, HANDLE, c_float_p, c_size_t, c_int]),
    "stochflow_model_fit_whitening": (c_int, [HANDLE, c_float_p, c_size_t]),
    "stochflow_model_set_whitening": (c_int, [HANDLE, c_double_p, c_double_p, c_double_p]),
    "stochflow_model_whitening": (c_int, [c_double_p, HANDLE]),
    "stochflow_model_fit_context_standardization": (c_int, [HANDLE, c_float_p, c_size_t]),
    "stochflow_model_set_context_standardization": (c_int, [HANDLE, c_double_p, c_double_p]),
    "stochflow_model_context_standardization": (c_int, [c_double_p, c_double_p, HANDLE]),
}

# void *user, double t -> double (stochflow_eps_fn)
EPS_FN = ctypes.CFUNCTYPE(c_double, c_void_p, c_double)

# void *user, uint64_t step, double loss, double val_nll, double val_se -> int
TRAIN_PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_double, c_double, c_double)

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
    "stochflow_sinterp_set_schedule",
    "stochflow_sinterp_set_gamma",
    "stochflow_sde_sample_fn",
    "stochflow_sde_log_prob_fn",
    "stochflow_model_train_simulator",
    "stochflow_trainer_set_parallel",  # collective callbacks: an MPI engine's (doc/distributed.md)
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
    "STOCHFLOW_E_BUSY": -12,
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
    "STOCHFLOW_PARAM_GRAD_BLOCK": 117,
    "STOCHFLOW_PARAM_TRAIN_TARGET": 127,
    "STOCHFLOW_TRAIN_TARGET_DRAW": 1,
    "STOCHFLOW_TRAIN_TARGET_BATCH": 2,
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
    "STOCHFLOW_COUPLING_OT_MAX_N": 2048,
    "STOCHFLOW_PARAM_INTERP_LR": 113,
    "STOCHFLOW_PARAM_COUPLING": 114,
    "STOCHFLOW_PARAM_SINKHORN_REG": 115,
    "STOCHFLOW_STAT_NFE": 1,
    "STOCHFLOW_STAT_ACCEPTED": 2,
    "STOCHFLOW_STAT_REJECTED": 3,
    "STOCHFLOW_STAT_T": 4,
    "STOCHFLOW_ARCH_MLP": 1,
    "STOCHFLOW_ARCH_UNET": 2,
    "STOCHFLOW_ARCH_RESMLP": 3,
    "STOCHFLOW_UNET_MAX_LEVELS": 6,
    "STOCHFLOW_TRAINER_BATCH_SIZE": 500,
    "STOCHFLOW_TRAINER_MAX_STEPS": 501,
    "STOCHFLOW_TRAINER_MAX_SECONDS": 502,
    "STOCHFLOW_TRAINER_EVAL_EVERY": 503,
    "STOCHFLOW_TRAINER_PATIENCE": 504,
    "STOCHFLOW_TRAINER_VAL_FRACTION": 505,
    "STOCHFLOW_TRAINER_VAL_SUBSET": 506,
    "STOCHFLOW_TRAINER_SEED": 507,
    "STOCHFLOW_TRAINER_MIN_DELTA": 508,
    "STOCHFLOW_TRAINER_KEEP_BEST": 509,
    "STOCHFLOW_TRAINER_SET_HORIZON": 510,
    "STOCHFLOW_TRAINER_STANDARDIZE": 511,
    "STOCHFLOW_TRAINER_VAL_BLOCK": 512,
    "STOCHFLOW_TRAINER_STAT_BEST_NLL": 550,
    "STOCHFLOW_TRAINER_STAT_BEST_STEP": 551,
    "STOCHFLOW_TRAINER_STAT_FINAL_NLL": 552,
    "STOCHFLOW_TRAINER_STAT_FINAL_SE": 553,
    "STOCHFLOW_TRAINER_STAT_STEPS": 554,
    "STOCHFLOW_TRAINER_STAT_EVALS": 555,
    "STOCHFLOW_TRAINER_STAT_STOP": 556,
    "STOCHFLOW_TRAINER_STAT_LAST_LOSS": 557,
    "STOCHFLOW_TRAINER_STAT_TRAIN_ROWS": 558,
    "STOCHFLOW_TRAINER_STAT_VAL_ROWS": 559,
    "STOCHFLOW_TRAINER_STOP_STEPS": 1,
    "STOCHFLOW_TRAINER_STOP_TIME": 2,
    "STOCHFLOW_TRAINER_STOP_PATIENCE": 3,
    "STOCHFLOW_TRAINER_STOP_CANCELLED": 4,
    "STOCHFLOW_GAMMA_ZERO": 1,
    "STOCHFLOW_GAMMA_BROWNIAN": 2,
    "STOCHFLOW_GAMMA_BROWNIAN_SCALED": 3,
    "STOCHFLOW_GAMMA_QUADRATIC": 4,
    "STOCHFLOW_GAMMA_SIN2": 5,
    "STOCHFLOW_GAMMA_CUSTOM": 6,
    "STOCHFLOW_SI_TWO_SIDED": 1,
    "STOCHFLOW_SI_ONE_SIDED": 2,
    "STOCHFLOW_SI_MIRROR": 3,
    "STOCHFLOW_FIELD_VELOCITY": 1,
    "STOCHFLOW_FIELD_DRIFT": 2,
    "STOCHFLOW_FIELD_SCORE": 3,
    "STOCHFLOW_FIELD_DENOISER": 4,
    "STOCHFLOW_FIELD_SCORE_FROM_VELOCITY": 5,
    "STOCHFLOW_SDE_EULER_MARUYAMA": 1,
    "STOCHFLOW_SDE_HEUN": 2,
    "STOCHFLOW_PARAM_SDE_METHOD": 600,
    "STOCHFLOW_PARAM_SDE_STEPS": 601,
    "STOCHFLOW_PARAM_SDE_EPS": 602,
    "STOCHFLOW_PARAM_SDE_T_END": 603,
    "STOCHFLOW_PARAM_SDE_DENOISE": 604,
    "STOCHFLOW_PARAM_SDE_DRIFT": 605,
    "STOCHFLOW_PARAM_SDE_SCORE": 606,
    "STOCHFLOW_PARAM_SDE_PATHS": 607,
    "STOCHFLOW_PARAM_SDE_LIK_AVG": 608,
    "STOCHFLOW_PARAM_SDE_GUIDANCE": 609,
    "STOCHFLOW_PARAM_SDE_TRACE": 610,
    "STOCHFLOW_SDE_LIK_MEAN": 1,
    "STOCHFLOW_SDE_LIK_LOGMEANEXP": 2,
    "STOCHFLOW_PARAM_CTX_DROPOUT": 126,
    "STOCHFLOW_PARAM_GUIDANCE": 303,
    "STOCHFLOW_OBJECTIVE_ANTITHETIC": 1,
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
    # Installed by pip (meson-python wheel, pyproject.toml): the library is packed into
    # site-packages/.stochflow.mesonpy.libs/ beside the package.
    wheel_libs = os.path.join(os.path.dirname(here), ".stochflow.mesonpy.libs")
    if os.path.isdir(wheel_libs):
        for name in sorted(os.listdir(wheel_libs)):
            if name.startswith("libstochflow.so"):
                out.append(("pip install", os.path.join(wheel_libs, name)))
                break
    # Installed by `meson install`: _install_paths.py records the library directory.
    try:
        from . import _install_paths  # generated at install time
        out.append(("install libdir", os.path.join(_install_paths.LIBDIR, "libstochflow.so.1")))
    except ImportError:
        pass
    # Source checkout: bindings/python/stochflow -> <repo>/build/lib (README's build dir).
    repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.exists(os.path.join(repo, "include", "stochflow.h")):
        out.append(("build tree", os.path.join(repo, "build", "lib", "libstochflow.so.1")))
    found = ctypes.util.find_library("stochflow")
    if found:
        out.append(("system loader", found))
    out.append(("system loader", "libstochflow.so.1"))
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
