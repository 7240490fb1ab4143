//! Raw declarations of the libstochflow C ABI (include/stochflow.h), one to one.
//!
//! Everything here is `unsafe` and follows the header's documentation exactly; use the
//! `stochflow` crate for a safe interface. bindings/check_symbols.py (run by
//! `meson test`) checks every declaration and constant against the header.
#![no_std]
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_void};

// ---- status codes ----
pub const STOCHFLOW_OK: c_int = 0;
pub const STOCHFLOW_E_INVALID: c_int = -1;
pub const STOCHFLOW_E_NOMEM: c_int = -2;
pub const STOCHFLOW_E_IO: c_int = -3;
pub const STOCHFLOW_E_FORMAT: c_int = -4;
pub const STOCHFLOW_E_NONFINITE: c_int = -5;
pub const STOCHFLOW_E_STEP_UNDERFLOW: c_int = -6;
pub const STOCHFLOW_E_MAX_STEPS: c_int = -7;
pub const STOCHFLOW_E_CANCELLED: c_int = -8;
pub const STOCHFLOW_E_UNSUPPORTED: c_int = -9;
pub const STOCHFLOW_E_VERSION: c_int = -10;
pub const STOCHFLOW_E_CALLBACK: c_int = -11;
pub const STOCHFLOW_E_BUSY: c_int = -12;

// ---- enumerations ----
pub const STOCHFLOW_ACT_SILU: c_int = 1;
pub const STOCHFLOW_ACT_TANH: c_int = 2;
pub const STOCHFLOW_ACT_RELU: c_int = 3;
pub const STOCHFLOW_ACT_SOFTPLUS: c_int = 4;
pub const STOCHFLOW_TIME_RAW: c_int = 1;
pub const STOCHFLOW_TIME_FOURIER: c_int = 2;
pub const STOCHFLOW_INTERP_TRIG: c_int = 1;
pub const STOCHFLOW_INTERP_LINEAR: c_int = 2;
pub const STOCHFLOW_INTERP_CUSTOM: c_int = 3;
pub const STOCHFLOW_SOLVER_EULER: c_int = 1;
pub const STOCHFLOW_SOLVER_HEUN: c_int = 2;
pub const STOCHFLOW_SOLVER_RK4: c_int = 3;
pub const STOCHFLOW_SOLVER_DOPRI5: c_int = 4;
pub const STOCHFLOW_TRACE_EXACT: c_int = 1;
pub const STOCHFLOW_TRACE_HUTCHINSON: c_int = 2;
pub const STOCHFLOW_PROBE_RADEMACHER: c_int = 1;
pub const STOCHFLOW_PROBE_GAUSSIAN: c_int = 2;
pub const STOCHFLOW_LR_CONSTANT: c_int = 1;
pub const STOCHFLOW_LR_STEP: c_int = 2;
pub const STOCHFLOW_LR_COSINE: c_int = 3;

// ---- keyed parameters ----
pub const STOCHFLOW_PARAM_LR: c_int = 100;
pub const STOCHFLOW_PARAM_BETA1: c_int = 101;
pub const STOCHFLOW_PARAM_BETA2: c_int = 102;
pub const STOCHFLOW_PARAM_ADAM_EPS: c_int = 103;
pub const STOCHFLOW_PARAM_WEIGHT_DECAY: c_int = 104;
pub const STOCHFLOW_PARAM_GRAD_CLIP: c_int = 105;
pub const STOCHFLOW_PARAM_EMA_DECAY: c_int = 106;
pub const STOCHFLOW_PARAM_LR_SCHEDULE: c_int = 107;
pub const STOCHFLOW_PARAM_LR_DECAY_EVERY: c_int = 108;
pub const STOCHFLOW_PARAM_LR_DECAY_FACTOR: c_int = 109;
pub const STOCHFLOW_PARAM_LR_WARMUP: c_int = 110;
pub const STOCHFLOW_PARAM_LR_TOTAL_STEPS: c_int = 111;
pub const STOCHFLOW_PARAM_LR_MIN: c_int = 112;
pub const STOCHFLOW_PARAM_EMA_WARMUP: c_int = 116;
pub const STOCHFLOW_PARAM_GRAD_BLOCK: c_int = 117;
pub const STOCHFLOW_PARAM_TRAIN_TARGET: c_int = 127;
pub const STOCHFLOW_TRAIN_TARGET_DRAW: c_int = 1;
pub const STOCHFLOW_TRAIN_TARGET_BATCH: c_int = 2;
pub const STOCHFLOW_PARAM_SOLVER: c_int = 200;
pub const STOCHFLOW_PARAM_STEPS: c_int = 201;
pub const STOCHFLOW_PARAM_RTOL: c_int = 202;
pub const STOCHFLOW_PARAM_ATOL: c_int = 203;
pub const STOCHFLOW_PARAM_H_INIT: c_int = 204;
pub const STOCHFLOW_PARAM_H_MIN: c_int = 205;
pub const STOCHFLOW_PARAM_MAX_STEPS: c_int = 206;
pub const STOCHFLOW_PARAM_LOGP_ERROR: c_int = 207;
pub const STOCHFLOW_PARAM_TRACE: c_int = 300;
pub const STOCHFLOW_PARAM_PROBES: c_int = 301;
pub const STOCHFLOW_PARAM_PROBE_DIST: c_int = 302;
pub const STOCHFLOW_PARAM_THREADS: c_int = 400;
pub const STOCHFLOW_PARAM_EVAL_WEIGHTS: c_int = 401;

// ---- conditional models (doc/conditional.md) ----
pub const STOCHFLOW_PARAM_CTX_DROPOUT: c_int = 126;
pub const STOCHFLOW_PARAM_GUIDANCE: c_int = 303;

// ---- learnable interpolant, minibatch couplings ----
pub const STOCHFLOW_INTERP_FOURIER: c_int = 4;
pub const STOCHFLOW_COUPLING_INDEPENDENT: c_int = 1;
pub const STOCHFLOW_COUPLING_OT: c_int = 2;
pub const STOCHFLOW_COUPLING_SINKHORN: c_int = 3;
pub const STOCHFLOW_COUPLING_OT_MAX_N: c_int = 2048;
pub const STOCHFLOW_PARAM_INTERP_LR: c_int = 113;
pub const STOCHFLOW_PARAM_COUPLING: c_int = 114;
pub const STOCHFLOW_PARAM_SINKHORN_REG: c_int = 115;

// ---- solver statistics ----
pub const STOCHFLOW_STAT_NFE: c_int = 1;
pub const STOCHFLOW_STAT_ACCEPTED: c_int = 2;
pub const STOCHFLOW_STAT_REJECTED: c_int = 3;
pub const STOCHFLOW_STAT_T: c_int = 4;

// ---- U-Net ----
pub const STOCHFLOW_ARCH_MLP: c_int = 1;
pub const STOCHFLOW_ARCH_UNET: c_int = 2;
pub const STOCHFLOW_ARCH_RESMLP: c_int = 3;
pub const STOCHFLOW_UNET_MAX_LEVELS: usize = 6;

// ---- trainer keyed parameters (500s), statistics, stop reasons ----
pub const STOCHFLOW_TRAINER_BATCH_SIZE: c_int = 500;
pub const STOCHFLOW_TRAINER_MAX_STEPS: c_int = 501;
pub const STOCHFLOW_TRAINER_MAX_SECONDS: c_int = 502;
pub const STOCHFLOW_TRAINER_EVAL_EVERY: c_int = 503;
pub const STOCHFLOW_TRAINER_PATIENCE: c_int = 504;
pub const STOCHFLOW_TRAINER_VAL_FRACTION: c_int = 505;
pub const STOCHFLOW_TRAINER_VAL_SUBSET: c_int = 506;
pub const STOCHFLOW_TRAINER_SEED: c_int = 507;
pub const STOCHFLOW_TRAINER_MIN_DELTA: c_int = 508;
pub const STOCHFLOW_TRAINER_KEEP_BEST: c_int = 509;
pub const STOCHFLOW_TRAINER_SET_HORIZON: c_int = 510;
pub const STOCHFLOW_TRAINER_STANDARDIZE: c_int = 511;
pub const STOCHFLOW_TRAINER_VAL_BLOCK: c_int = 512;
pub const STOCHFLOW_TRAINER_STAT_BEST_NLL: c_int = 550;
pub const STOCHFLOW_TRAINER_STAT_BEST_STEP: c_int = 551;
pub const STOCHFLOW_TRAINER_STAT_FINAL_NLL: c_int = 552;
pub const STOCHFLOW_TRAINER_STAT_FINAL_SE: c_int = 553;
pub const STOCHFLOW_TRAINER_STAT_STEPS: c_int = 554;
pub const STOCHFLOW_TRAINER_STAT_EVALS: c_int = 555;
pub const STOCHFLOW_TRAINER_STAT_STOP: c_int = 556;
pub const STOCHFLOW_TRAINER_STAT_LAST_LOSS: c_int = 557;
pub const STOCHFLOW_TRAINER_STAT_TRAIN_ROWS: c_int = 558;
pub const STOCHFLOW_TRAINER_STAT_VAL_ROWS: c_int = 559;
pub const STOCHFLOW_TRAINER_STOP_STEPS: c_int = 1;
pub const STOCHFLOW_TRAINER_STOP_TIME: c_int = 2;
pub const STOCHFLOW_TRAINER_STOP_PATIENCE: c_int = 3;
pub const STOCHFLOW_TRAINER_STOP_CANCELLED: c_int = 4;
// ---- stochastic interpolants and SDE sampling (doc/sde.md) ----
pub const STOCHFLOW_GAMMA_ZERO: c_int = 1;
pub const STOCHFLOW_GAMMA_BROWNIAN: c_int = 2;
pub const STOCHFLOW_GAMMA_BROWNIAN_SCALED: c_int = 3;
pub const STOCHFLOW_GAMMA_QUADRATIC: c_int = 4;
pub const STOCHFLOW_GAMMA_SIN2: c_int = 5;
pub const STOCHFLOW_GAMMA_CUSTOM: c_int = 6;
pub const STOCHFLOW_SI_TWO_SIDED: c_int = 1;
pub const STOCHFLOW_SI_ONE_SIDED: c_int = 2;
pub const STOCHFLOW_SI_MIRROR: c_int = 3;
pub const STOCHFLOW_FIELD_VELOCITY: c_int = 1;
pub const STOCHFLOW_FIELD_DRIFT: c_int = 2;
pub const STOCHFLOW_FIELD_SCORE: c_int = 3;
pub const STOCHFLOW_FIELD_DENOISER: c_int = 4;
pub const STOCHFLOW_FIELD_SCORE_FROM_VELOCITY: c_int = 5;
pub const STOCHFLOW_SDE_EULER_MARUYAMA: c_int = 1;
pub const STOCHFLOW_SDE_HEUN: c_int = 2;
pub const STOCHFLOW_PARAM_SDE_METHOD: c_int = 600;
pub const STOCHFLOW_PARAM_SDE_STEPS: c_int = 601;
pub const STOCHFLOW_PARAM_SDE_EPS: c_int = 602;
pub const STOCHFLOW_PARAM_SDE_T_END: c_int = 603;
pub const STOCHFLOW_PARAM_SDE_DENOISE: c_int = 604;
pub const STOCHFLOW_PARAM_SDE_DRIFT: c_int = 605;
pub const STOCHFLOW_PARAM_SDE_SCORE: c_int = 606;
pub const STOCHFLOW_PARAM_SDE_PATHS: c_int = 607;
pub const STOCHFLOW_PARAM_SDE_LIK_AVG: c_int = 608;
pub const STOCHFLOW_PARAM_SDE_GUIDANCE: c_int = 609;
pub const STOCHFLOW_PARAM_SDE_TRACE: c_int = 610;
pub const STOCHFLOW_SDE_LIK_MEAN: c_int = 1;
pub const STOCHFLOW_SDE_LIK_LOGMEANEXP: c_int = 2;
/// `stochflow_unet_options`, field for field; fill with `stochflow_unet_options_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct stochflow_unet_options {
    pub size: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub base: usize,
    pub n_levels: usize,
    pub mult: [usize; STOCHFLOW_UNET_MAX_LEVELS],
    pub blocks: usize,
    pub attn_mask: u32,
    pub reserved32: u32,
    pub groups: usize,
    pub reserved: [u64; 4],
}
// stochastic interpolants: training
pub const STOCHFLOW_OBJECTIVE_ANTITHETIC: c_int = 1;
pub const STOCHFLOW_OBJECTIVE_T_MIN: f64 = 1e-3;

// ---- opaque handles ----
#[repr(C)]
pub struct stochflow_config {
    _private: [u8; 0],
}
#[repr(C)]
pub struct stochflow_model {
    _private: [u8; 0],
}
#[repr(C)]
pub struct stochflow_solver {
    _private: [u8; 0],
}
#[repr(C)]
pub struct stochflow_trainer {
    _private: [u8; 0],
}
#[repr(C)]
pub struct stochflow_sinterp {
    _private: [u8; 0],
}
#[repr(C)]
pub struct stochflow_sde {
    _private: [u8; 0],
}

// ---- callbacks ----
pub type stochflow_train_progress_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        step: u64,
        loss: f64,
        val_nll: f64,
        val_se: f64,
    ) -> c_int,
>;
pub type stochflow_schedule_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, t: f64, out: *mut f64)>;
pub type stochflow_velocity_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        t: f64,
        n: usize,
        d: usize,
        x: *const f32,
        v: *mut f32,
        div: *mut f32,
    ) -> c_int,
>;
pub type stochflow_logpdf_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        n: usize,
        d: usize,
        x: *const f32,
        logp: *mut f32,
    ) -> c_int,
>;
pub type stochflow_progress_fn = Option<unsafe extern "C" fn(user: *mut c_void, t: f64) -> c_int>;
pub type stochflow_gamma_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, t: f64, out: *mut f64)>;
pub type stochflow_sde_field_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        t: f64,
        n: usize,
        d: usize,
        x: *const f32,
        b: *mut f32,
        s: *mut f32,
        div_b: *mut f32,
        div_s: *mut f32,
    ) -> c_int,
>;
pub type stochflow_eps_fn = Option<unsafe extern "C" fn(user: *mut c_void, t: f64) -> f64>;
pub type stochflow_simulator_fn = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        n: usize,
        seed: u64,
        step: u64,
        theta: *mut f32,
        x: *mut f32,
    ) -> c_int,
>;

extern "C" {
    // errors and versions
    pub fn stochflow_status_string(status: c_int) -> *const c_char;
    pub fn stochflow_last_error_message() -> *const c_char;
    pub fn stochflow_version_string() -> *const c_char;
    pub fn stochflow_version_number() -> c_int;
    pub fn stochflow_param_bounds(lo: *mut f64, hi: *mut f64, def: *mut f64, key: c_int) -> c_int;
    pub fn stochflow_param_name(key: c_int) -> *const c_char;
    pub fn stochflow_param_key(key: *mut c_int, name: *const c_char) -> c_int;
    pub fn stochflow_param_count() -> usize;
    pub fn stochflow_param_key_at(i: usize) -> c_int;

    // configuration
    pub fn stochflow_config_new(out: *mut *mut stochflow_config, dim: usize) -> c_int;
    pub fn stochflow_config_free(cfg: *mut stochflow_config);
    pub fn stochflow_config_set_hidden(
        cfg: *mut stochflow_config,
        n_layers: usize,
        widths: *const usize,
    ) -> c_int;
    pub fn stochflow_config_set_activation(cfg: *mut stochflow_config, activation: c_int) -> c_int;
    pub fn stochflow_config_set_time_embedding(
        cfg: *mut stochflow_config,
        kind: c_int,
        n_freq: usize,
    ) -> c_int;
    pub fn stochflow_config_set_interpolant(cfg: *mut stochflow_config, kind: c_int) -> c_int;
    pub fn stochflow_config_set_schedule(
        cfg: *mut stochflow_config,
        fn_: stochflow_schedule_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_config_set_seed(cfg: *mut stochflow_config, seed: u64) -> c_int;
    pub fn stochflow_config_dim(cfg: *const stochflow_config) -> usize;
    pub fn stochflow_config_hidden(
        n_layers: *mut usize,
        widths: *mut usize,
        cap: usize,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_config_activation(cfg: *const stochflow_config) -> c_int;
    pub fn stochflow_config_time_embedding(
        kind: *mut c_int,
        n_freq: *mut usize,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_config_interpolant(cfg: *const stochflow_config) -> c_int;
    pub fn stochflow_config_seed(cfg: *const stochflow_config) -> u64;

    // model
    pub fn stochflow_model_new(
        out: *mut *mut stochflow_model,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_model_free(m: *mut stochflow_model);
    pub fn stochflow_model_config(
        out: *mut *mut stochflow_config,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_dim(m: *const stochflow_model) -> usize;
    pub fn stochflow_model_num_params(m: *const stochflow_model) -> usize;
    pub fn stochflow_model_step(m: *const stochflow_model) -> u64;
    pub fn stochflow_model_set_param(m: *mut stochflow_model, key: c_int, value: f64) -> c_int;
    pub fn stochflow_model_get_param(out: *mut f64, m: *const stochflow_model, key: c_int)
        -> c_int;
    pub fn stochflow_model_set_schedule(
        m: *mut stochflow_model,
        fn_: stochflow_schedule_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_model_loss(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_train_step(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_compute_gradient(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_apply_gradient(m: *mut stochflow_model) -> c_int;
    // data-parallel training (doc/distributed.md)
    pub fn stochflow_grad_tree_split(lo: usize, hi: usize) -> usize;
    pub fn stochflow_grad_share(
        row0: *mut usize,
        rows: *mut usize,
        active: *mut usize,
        n_global: usize,
        block: usize,
        rank: usize,
        size: usize,
    ) -> c_int;
    pub fn stochflow_model_partial_gradient(
        loss_sum: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        n: usize,
        x0: *const f32,
        t: *const f32,
        row0: usize,
        n_global: usize,
    ) -> c_int;
    pub fn stochflow_model_record_loss(m: *mut stochflow_model, loss: f64) -> c_int;
    pub fn stochflow_model_parameters(
        params: *mut *mut f32,
        count: *mut usize,
        m: *mut stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_gradients(
        grads: *mut *mut f32,
        count: *mut usize,
        m: *mut stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_velocity(
        v: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_velocity_vjp(
        out: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        u: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_divergence(
        div: *mut f32,
        v: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_save(m: *const stochflow_model, path: *const c_char) -> c_int;
    pub fn stochflow_model_load(out: *mut *mut stochflow_model, path: *const c_char) -> c_int;
    pub fn stochflow_model_serialized_size(size: *mut usize, m: *const stochflow_model) -> c_int;
    pub fn stochflow_model_save_buffer(
        written: *mut usize,
        buf: *mut c_void,
        cap: usize,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_load_buffer(
        out: *mut *mut stochflow_model,
        buf: *const c_void,
        len: usize,
    ) -> c_int;

    // solver
    pub fn stochflow_solver_new(out: *mut *mut stochflow_solver) -> c_int;
    pub fn stochflow_solver_free(s: *mut stochflow_solver);
    pub fn stochflow_solver_set_param(s: *mut stochflow_solver, key: c_int, value: f64) -> c_int;
    pub fn stochflow_solver_get_param(
        out: *mut f64,
        s: *const stochflow_solver,
        key: c_int,
    ) -> c_int;
    pub fn stochflow_solver_set_seed(s: *mut stochflow_solver, seed: u64) -> c_int;
    pub fn stochflow_solver_set_base_logpdf(
        s: *mut stochflow_solver,
        fn_: stochflow_logpdf_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_solver_set_progress(
        s: *mut stochflow_solver,
        fn_: stochflow_progress_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_solver_stat(out: *mut f64, s: *const stochflow_solver, key: c_int) -> c_int;
    pub fn stochflow_solver_integrate(
        dlogp: *mut f32,
        dlogp_se: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        x: *mut f32,
        n: usize,
        t0: f64,
        t1: f64,
    ) -> c_int;
    pub fn stochflow_solver_integrate_fn(
        dlogp: *mut f32,
        dlogp_se: *mut f32,
        s: *mut stochflow_solver,
        fn_: stochflow_velocity_fn,
        user: *mut c_void,
        d: usize,
        x: *mut f32,
        n: usize,
        t0: f64,
        t1: f64,
    ) -> c_int;
    pub fn stochflow_solver_log_prob(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        x: *const f32,
        n: usize,
        t: f64,
    ) -> c_int;
    pub fn stochflow_solver_log_prob_fn(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_solver,
        fn_: stochflow_velocity_fn,
        user: *mut c_void,
        d: usize,
        x: *const f32,
        n: usize,
        t: f64,
    ) -> c_int;
    pub fn stochflow_solver_sample(
        x: *mut f32,
        logp: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_solver_sample_fn(
        x: *mut f32,
        logp: *mut f32,
        s: *mut stochflow_solver,
        fn_: stochflow_velocity_fn,
        user: *mut c_void,
        d: usize,
        n: usize,
        seed: u64,
    ) -> c_int;

    // learnable interpolant, couplings
    pub fn stochflow_config_set_fourier_interpolant(
        cfg: *mut stochflow_config,
        base: c_int,
        n_modes: usize,
    ) -> c_int;
    pub fn stochflow_config_fourier_interpolant(
        base: *mut c_int,
        n_modes: *mut usize,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_model_interpolant_coefficients(
        alpha: *mut f64,
        beta: *mut f64,
        n_modes: *mut usize,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_interpolant_eval(
        out: *mut f64,
        m: *const stochflow_model,
        t: f64,
    ) -> c_int;
    pub fn stochflow_model_path_length(
        out: *mut f64,
        count: *mut u64,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_coupling_assign(
        perm: *mut usize,
        cost: *mut f64,
        x0: *const f32,
        x1: *const f32,
        n: usize,
        d: usize,
        mode: c_int,
        reg: f64,
        seed: u64,
    ) -> c_int;

    // utilities
    pub fn stochflow_random_normal(out: *mut f32, n: usize, seed: u64, stream: u64) -> c_int;
    pub fn stochflow_random_uniform(out: *mut f64, n: usize, seed: u64, stream: u64) -> c_int;
    pub fn stochflow_toy_sample(
        out: *mut f32,
        name: *const c_char,
        n: usize,
        seed: u64,
        stream: u64,
    ) -> c_int;
    pub fn stochflow_toy_count() -> usize;
    pub fn stochflow_toy_name(i: usize) -> *const c_char;
    pub fn stochflow_toy_log_density(
        logp: *mut f32,
        entropy: *mut f64,
        name: *const c_char,
        x: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_png_write(
        path: *const c_char,
        pixels: *const u8,
        width: u32,
        height: u32,
        channels: c_int,
    ) -> c_int;

    // U-Net configuration, image data, bits/dim
    pub fn stochflow_unet_options_init(o: *mut stochflow_unet_options, size: usize) -> c_int;
    pub fn stochflow_config_set_unet(
        cfg: *mut stochflow_config,
        o: *const stochflow_unet_options,
    ) -> c_int;
    pub fn stochflow_config_arch(cfg: *const stochflow_config) -> c_int;
    pub fn stochflow_config_set_resmlp(
        cfg: *mut stochflow_config,
        width: usize,
        blocks: usize,
    ) -> c_int;
    pub fn stochflow_config_resmlp(
        width: *mut usize,
        blocks: *mut usize,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_config_set_resmlp_experts(cfg: *mut stochflow_config, experts: usize)
        -> c_int;
    pub fn stochflow_config_resmlp_experts(experts: *mut usize, cfg: *const stochflow_config)
        -> c_int;
    pub fn stochflow_config_unet(
        out: *mut stochflow_unet_options,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_images_load(
        pixels: *mut *mut u8,
        count: *mut usize,
        channels: *mut usize,
        height: *mut usize,
        width: *mut usize,
        source: *const c_char,
        max_count: usize,
    ) -> c_int;
    pub fn stochflow_images_load_limited(
        pixels: *mut *mut u8,
        count: *mut usize,
        channels: *mut usize,
        height: *mut usize,
        width: *mut usize,
        source: *const c_char,
        max_count: usize,
        max_values: usize,
    ) -> c_int;
    pub fn stochflow_images_free(pixels: *mut u8);
    pub fn stochflow_images_dequantize(
        out: *mut f32,
        pixels: *const u8,
        n: usize,
        seed: u64,
        stream: u64,
    ) -> c_int;
    pub fn stochflow_images_to_float(out: *mut f32, pixels: *const u8, n: usize) -> c_int;
    pub fn stochflow_images_quantize(out: *mut u8, x: *const f32, n: usize) -> c_int;
    pub fn stochflow_bits_per_dim(logp: f64, dim: usize) -> f64;
    pub fn stochflow_images_write_grid(
        path: *const c_char,
        images: *const f32,
        n: usize,
        channels: usize,
        height: usize,
        width: usize,
        ncols: usize,
    ) -> c_int;
    // ---- data readers and the trainer (doc/data.md, doc/training.md) ----
    pub fn stochflow_data_parse_npy(
        x: *mut *mut f32,
        n: *mut usize,
        d: *mut usize,
        buf: *const c_void,
        len: usize,
        max_values: usize,
    ) -> c_int;
    pub fn stochflow_data_parse_csv(
        x: *mut *mut f32,
        n: *mut usize,
        d: *mut usize,
        buf: *const c_void,
        len: usize,
        max_values: usize,
    ) -> c_int;
    pub fn stochflow_data_read_npy(
        x: *mut *mut f32,
        n: *mut usize,
        d: *mut usize,
        path: *const c_char,
        max_bytes: usize,
        max_values: usize,
    ) -> c_int;
    pub fn stochflow_data_read_csv(
        x: *mut *mut f32,
        n: *mut usize,
        d: *mut usize,
        path: *const c_char,
        max_bytes: usize,
        max_values: usize,
    ) -> c_int;
    pub fn stochflow_data_free(x: *mut f32);
    pub fn stochflow_trainer_new(out: *mut *mut stochflow_trainer) -> c_int;
    pub fn stochflow_trainer_free(tr: *mut stochflow_trainer);
    pub fn stochflow_trainer_set_param(tr: *mut stochflow_trainer, key: c_int, value: f64)
        -> c_int;
    pub fn stochflow_trainer_get_param(
        out: *mut f64,
        tr: *const stochflow_trainer,
        key: c_int,
    ) -> c_int;
    pub fn stochflow_trainer_param_bounds(
        lo: *mut f64,
        hi: *mut f64,
        def: *mut f64,
        key: c_int,
    ) -> c_int;
    pub fn stochflow_trainer_set_progress(
        tr: *mut stochflow_trainer,
        fn_: stochflow_train_progress_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_trainer_solver(
        out: *mut *mut stochflow_solver,
        tr: *mut stochflow_trainer,
    ) -> c_int;
    pub fn stochflow_trainer_stat(out: *mut f64, tr: *const stochflow_trainer, key: c_int)
        -> c_int;
    pub fn stochflow_trainer_fit(
        tr: *mut stochflow_trainer,
        m: *mut stochflow_model,
        x: *const f32,
        n: usize,
        xval: *const f32,
        nval: usize,
    ) -> c_int;
    pub fn stochflow_trainer_state_size(size: *mut usize, tr: *const stochflow_trainer) -> c_int;
    pub fn stochflow_model_fit_standardization(m: *mut stochflow_model, x: *const f32, n: usize)
        -> c_int;
    pub fn stochflow_model_set_standardization(
        m: *mut stochflow_model,
        shift: *const f64,
        scale: *const f64,
    ) -> c_int;
    pub fn stochflow_model_standardization(
        shift: *mut f64,
        scale: *mut f64,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_standardize(
        out: *mut f32,
        m: *const stochflow_model,
        x: *const f32,
        n: usize,
        inverse: c_int,
    ) -> c_int;
    pub fn stochflow_model_fit_whitening(m: *mut stochflow_model, x: *const f32, n: usize) -> c_int;
    pub fn stochflow_model_set_whitening(
        m: *mut stochflow_model,
        shift: *const f64,
        scale: *const f64,
        chol: *const f64,
    ) -> c_int;
    pub fn stochflow_model_whitening(chol: *mut f64, m: *const stochflow_model) -> c_int;
    pub fn stochflow_model_fit_context_standardization(
        m: *mut stochflow_model,
        ctx: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_set_context_standardization(
        m: *mut stochflow_model,
        shift: *const f64,
        scale: *const f64,
    ) -> c_int;
    pub fn stochflow_model_context_standardization(
        shift: *mut f64,
        scale: *mut f64,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_trainer_save_state(
        written: *mut usize,
        tr: *const stochflow_trainer,
        buf: *mut c_void,
        cap: usize,
    ) -> c_int;
    pub fn stochflow_trainer_load_state(
        tr: *mut stochflow_trainer,
        buf: *const c_void,
        len: usize,
    ) -> c_int;

    // stochastic interpolants and SDE sampling (doc/sde.md)
    pub fn stochflow_gamma_eval(out: *mut f64, kind: c_int, scale: f64, t: f64) -> c_int;
    pub fn stochflow_sinterp_new(
        out: *mut *mut stochflow_sinterp,
        kind: c_int,
        schedule: c_int,
        gamma: c_int,
        scale: f64,
    ) -> c_int;
    pub fn stochflow_sinterp_free(si: *mut stochflow_sinterp);
    pub fn stochflow_sinterp_set_schedule(
        si: *mut stochflow_sinterp,
        fn_: stochflow_schedule_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_sinterp_set_gamma(
        si: *mut stochflow_sinterp,
        fn_: stochflow_gamma_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_sinterp_eval(out: *mut f64, si: *const stochflow_sinterp, t: f64) -> c_int;
    pub fn stochflow_sinterp_point(
        xt: *mut f32,
        target: *mut f32,
        si: *const stochflow_sinterp,
        field: c_int,
        t: *const f64,
        x0: *const f32,
        x1: *const f32,
        z: *const f32,
        n: usize,
        d: usize,
        sign: c_int,
    ) -> c_int;
    pub fn stochflow_sinterp_loss(
        loss: *mut f64,
        grad: *mut f32,
        si: *const stochflow_sinterp,
        field: c_int,
        t: *const f64,
        x0: *const f32,
        x1: *const f32,
        z: *const f32,
        o: *const f32,
        n: usize,
        d: usize,
        sign: c_int,
        weight: f64,
    ) -> c_int;
    pub fn stochflow_score_from_velocity(
        s: *mut f32,
        div_s: *mut f32,
        x: *const f32,
        v: *const f32,
        div_v: *const f32,
        n: usize,
        d: usize,
        ab: *const f64,
    ) -> c_int;
    pub fn stochflow_sde_new(out: *mut *mut stochflow_sde) -> c_int;
    pub fn stochflow_sde_free(s: *mut stochflow_sde);
    pub fn stochflow_sde_set_param(s: *mut stochflow_sde, key: c_int, value: f64) -> c_int;
    pub fn stochflow_sde_get_param(out: *mut f64, s: *const stochflow_sde, key: c_int) -> c_int;
    pub fn stochflow_sde_param_bounds(lo: *mut f64, hi: *mut f64, def: *mut f64, key: c_int)
        -> c_int;
    pub fn stochflow_sde_set_eps_schedule(
        s: *mut stochflow_sde,
        fn_: stochflow_eps_fn,
        user: *mut c_void,
    ) -> c_int;
    pub fn stochflow_sde_set_interpolant(s: *mut stochflow_sde, si: *const stochflow_sinterp)
        -> c_int;
    pub fn stochflow_sde_stat(out: *mut f64, s: *const stochflow_sde, key: c_int) -> c_int;
    pub fn stochflow_sde_sample_fn(
        x: *mut f32,
        s: *mut stochflow_sde,
        fn_: stochflow_sde_field_fn,
        user: *mut c_void,
        d: usize,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_sde_sample(
        x: *mut f32,
        s: *mut stochflow_sde,
        drift: *mut stochflow_model,
        score: *mut stochflow_model,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_sde_log_prob_fn(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_sde,
        fn_: stochflow_sde_field_fn,
        user: *mut c_void,
        d: usize,
        x: *const f32,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_sde_log_prob(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_sde,
        drift: *mut stochflow_model,
        score: *mut stochflow_model,
        x: *const f32,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_sde_sample_ctx(
        x: *mut f32,
        s: *mut stochflow_sde,
        drift: *mut stochflow_model,
        score: *mut stochflow_model,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_sde_log_prob_ctx(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_sde,
        drift: *mut stochflow_model,
        score: *mut stochflow_model,
        x: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        seed: u64,
    ) -> c_int;

    // conditional models (doc/conditional.md)
    pub fn stochflow_config_set_context(
        cfg: *mut stochflow_config,
        n_ctx: usize,
        n_classes: usize,
    ) -> c_int;
    pub fn stochflow_config_context(
        n_ctx: *mut usize,
        n_classes: *mut usize,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_model_context(
        n_ctx: *mut usize,
        n_classes: *mut usize,
        m: *const stochflow_model,
    ) -> c_int;
    pub fn stochflow_model_train_step_ctx(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_loss_ctx(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_compute_gradient_ctx(
        loss: *mut f64,
        m: *mut stochflow_model,
        x1: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        x0: *const f32,
        t: *const f32,
    ) -> c_int;
    pub fn stochflow_model_velocity_ctx(
        v: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_divergence_ctx(
        div: *mut f32,
        v: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_model_velocity_vjp_ctx(
        out: *mut f32,
        m: *mut stochflow_model,
        t: f64,
        x: *const f32,
        ctx: *const f32,
        labels: *const i32,
        u: *const f32,
        n: usize,
    ) -> c_int;
    pub fn stochflow_solver_sample_ctx(
        x: *mut f32,
        logp: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        seed: u64,
    ) -> c_int;
    pub fn stochflow_solver_log_prob_ctx(
        logp: *mut f32,
        se: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        x: *const f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        t: f64,
    ) -> c_int;
    pub fn stochflow_solver_integrate_ctx(
        dlogp: *mut f32,
        dlogp_se: *mut f32,
        s: *mut stochflow_solver,
        m: *mut stochflow_model,
        x: *mut f32,
        ctx: *const f32,
        labels: *const i32,
        n: usize,
        t0: f64,
        t1: f64,
    ) -> c_int;
    pub fn stochflow_model_train_simulator(
        loss: *mut f64,
        m: *mut stochflow_model,
        fn_: stochflow_simulator_fn,
        user: *mut c_void,
        n: usize,
    ) -> c_int;
    // stochastic interpolants: training
    pub fn stochflow_config_set_objective(
        cfg: *mut stochflow_config,
        field: c_int,
        kind: c_int,
        gamma: c_int,
        gamma_scale: f64,
        flags: c_int,
    ) -> c_int;
    pub fn stochflow_config_objective(
        field: *mut c_int,
        kind: *mut c_int,
        gamma: *mut c_int,
        gamma_scale: *mut f64,
        flags: *mut c_int,
        cfg: *const stochflow_config,
    ) -> c_int;
    pub fn stochflow_model_sinterp(
        out: *mut *mut stochflow_sinterp,
        m: *const stochflow_model,
    ) -> c_int;
}

/// Header functions deliberately not bound (checked by bindings/check_symbols.py):
/// stochflow_trainer_set_parallel takes collective callbacks, an MPI engine's
/// (doc/distributed.md).
pub const NOT_BOUND: &[&str] = &["stochflow_trainer_set_parallel"];
