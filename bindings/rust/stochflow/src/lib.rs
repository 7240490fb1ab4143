//! Safe Rust bindings for libstochflow: continuous-time normalizing flows trained with
//! stochastic interpolants.
//!
//! A thin layer over the C ABI (the `stochflow-sys` crate): every computation happens in
//! the C library. Handles are owned ([`Config`], [`Model`], [`Solver`]) and freed on
//! `Drop`; every fallible call returns `Result<_, Error>`; bulk data moves through
//! `&[f32]` / `&mut [f32]` slices in row-major order (point `i` of a batch in `d`
//! dimensions is `x[i*d .. i*d + d]`), checked for length before the C call.
//!
//! ```no_run
//! use stochflow::{Config, Model, Solver, SolverKind, toy_sample};
//! let mut cfg = Config::new(2)?;
//! cfg.set_hidden(&[64, 64])?;
//! let mut m = Model::new(&cfg)?;
//! m.set_param(stochflow::Param::Lr, 2e-3)?;
//! let mut batch = vec![0f32; 256 * 2];
//! for step in 0..2000 {
//!     toy_sample(&mut batch, "moons", 0, step)?;
//!     m.train_step(&batch)?;
//! }
//! let mut s = Solver::new()?;
//! s.set_solver(SolverKind::Rk4, 50)?;
//! let (x, logp) = s.sample_with_log_prob(&mut m, 1000, 0)?;
//! # Ok::<(), stochflow::Error>(())
//! ```
#![forbid(unsafe_op_in_unsafe_fn)]

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_int;
use std::path::Path;
use std::ptr;

use stochflow_sys as sys;

/// Kind of failure, one per C status code (`STOCHFLOW_E_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Invalid,
    NoMemory,
    Io,
    Format,
    NonFinite,
    StepUnderflow,
    MaxSteps,
    Cancelled,
    Unsupported,
    Version,
    Callback,
    /// A status code this version of the bindings does not know.
    Other,
}

impl ErrorKind {
    /// The kind of a negative C status code.
    pub fn from_status(status: i32) -> ErrorKind {
        match status {
            sys::STOCHFLOW_E_INVALID => ErrorKind::Invalid,
            sys::STOCHFLOW_E_NOMEM => ErrorKind::NoMemory,
            sys::STOCHFLOW_E_IO => ErrorKind::Io,
            sys::STOCHFLOW_E_FORMAT => ErrorKind::Format,
            sys::STOCHFLOW_E_NONFINITE => ErrorKind::NonFinite,
            sys::STOCHFLOW_E_STEP_UNDERFLOW => ErrorKind::StepUnderflow,
            sys::STOCHFLOW_E_MAX_STEPS => ErrorKind::MaxSteps,
            sys::STOCHFLOW_E_CANCELLED => ErrorKind::Cancelled,
            sys::STOCHFLOW_E_UNSUPPORTED => ErrorKind::Unsupported,
            sys::STOCHFLOW_E_VERSION => ErrorKind::Version,
            sys::STOCHFLOW_E_CALLBACK => ErrorKind::Callback,
            _ => ErrorKind::Other,
        }
    }
}

/// A failing call: the C status code, its kind, and the library's message (or the
/// binding's own, for length checks done before calling C).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    fn from_c(status: c_int) -> Error {
        // SAFETY: the message is a NUL-terminated thread-local string, never NULL.
        let msg = unsafe { CStr::from_ptr(sys::stochflow_last_error_message()) };
        Error {
            status,
            kind: ErrorKind::from_status(status),
            message: msg.to_string_lossy().into_owned(),
        }
    }
    fn invalid(message: String) -> Error {
        Error {
            status: sys::STOCHFLOW_E_INVALID,
            kind: ErrorKind::Invalid,
            message,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", status_string(self.status), self.status)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

fn check(status: c_int) -> Result<()> {
    if status < 0 {
        Err(Error::from_c(status))
    } else {
        Ok(())
    }
}

fn check_len(what: &str, len: usize, want: usize) -> Result<()> {
    if len != want {
        return Err(Error::invalid(format!(
            "{} has {} values, expected {}",
            what, len, want
        )));
    }
    Ok(())
}

/// Number of points in a row-major batch of dimension d.
#[allow(unknown_lints, clippy::manual_is_multiple_of)] // `%` keeps older toolchains working
fn rows(what: &str, len: usize, d: usize) -> Result<usize> {
    if len == 0 || len % d != 0 {
        return Err(Error::invalid(format!(
            "{} has {} values, expected a positive multiple of the dimension {}",
            what, len, d
        )));
    }
    Ok(len / d)
}

fn opt_ptr(s: Option<&[f32]>) -> *const f32 {
    s.map_or(ptr::null(), |s| s.as_ptr())
}

fn opt_mut(s: Option<&mut [f32]>) -> *mut f32 {
    s.map_or(ptr::null_mut(), |s| s.as_mut_ptr())
}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{} contains a NUL byte", what)))
}

fn path_cstring(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("path contains a NUL byte".to_string()))
}

/// Static English text of a status code.
pub fn status_string(status: i32) -> String {
    // SAFETY: returns static NUL-terminated text for every input.
    unsafe { CStr::from_ptr(sys::stochflow_status_string(status)) }
        .to_string_lossy()
        .into_owned()
}

/// Run-time library version "MAJOR.MINOR.PATCH".
pub fn version() -> String {
    // SAFETY: static string.
    unsafe { CStr::from_ptr(sys::stochflow_version_string()) }
        .to_string_lossy()
        .into_owned()
}

/// Run-time version as MAJOR*10000 + MINOR*100 + PATCH.
pub fn version_number() -> i32 {
    // SAFETY: no arguments.
    unsafe { sys::stochflow_version_number() }
}

// ---- enumerations -------------------------------------------------------------------

/// Hidden-layer activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu = 1,
    Tanh = 2,
    Relu = 3,
    Softplus = 4,
}

/// Interpolant schedule (custom callbacks are not bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolant {
    Trig = 1,
    Linear = 2,
}

/// How time enters the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeEmbedding {
    Raw,
    /// Fourier features with F frequencies (1..=64).
    Fourier(usize),
}

/// ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverKind {
    Euler = 1,
    Heun = 2,
    Rk4 = 3,
    Dopri5 = 4,
}

/// Divergence estimator of the log-density.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    Exact,
    /// Hutchinson estimator with K probes per point.
    Hutchinson(usize),
}

/// A keyed parameter (STOCHFLOW_PARAM_*): 100s/400s on a [`Model`], 200s/300s on a
/// [`Solver`]. Enumerated values are passed as their C numbers (e.g. `SolverKind::Rk4 as
/// i32 as f64`); 0 restores the default. Names, the list of keys and the bounds come from
/// the library's table ([`Param::from_name`], [`Param::name`], [`Param::all`],
/// [`param_bounds`]); the constants below are the header's key numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param(i32);

#[allow(non_upper_case_globals)]
impl Param {
    pub const Lr: Param = Param(sys::STOCHFLOW_PARAM_LR);
    pub const Beta1: Param = Param(sys::STOCHFLOW_PARAM_BETA1);
    pub const Beta2: Param = Param(sys::STOCHFLOW_PARAM_BETA2);
    pub const AdamEps: Param = Param(sys::STOCHFLOW_PARAM_ADAM_EPS);
    pub const WeightDecay: Param = Param(sys::STOCHFLOW_PARAM_WEIGHT_DECAY);
    pub const GradClip: Param = Param(sys::STOCHFLOW_PARAM_GRAD_CLIP);
    pub const EmaDecay: Param = Param(sys::STOCHFLOW_PARAM_EMA_DECAY);
    pub const LrSchedule: Param = Param(sys::STOCHFLOW_PARAM_LR_SCHEDULE);
    pub const LrDecayEvery: Param = Param(sys::STOCHFLOW_PARAM_LR_DECAY_EVERY);
    pub const LrDecayFactor: Param = Param(sys::STOCHFLOW_PARAM_LR_DECAY_FACTOR);
    pub const LrWarmup: Param = Param(sys::STOCHFLOW_PARAM_LR_WARMUP);
    pub const LrTotalSteps: Param = Param(sys::STOCHFLOW_PARAM_LR_TOTAL_STEPS);
    pub const LrMin: Param = Param(sys::STOCHFLOW_PARAM_LR_MIN);
    pub const InterpLr: Param = Param(sys::STOCHFLOW_PARAM_INTERP_LR);
    pub const Coupling: Param = Param(sys::STOCHFLOW_PARAM_COUPLING);
    pub const SinkhornReg: Param = Param(sys::STOCHFLOW_PARAM_SINKHORN_REG);
    /// EMA warm-up: 1 = decay min(EmaDecay, (1 + s) / (10 + s)) at step s, 2 = constant
    /// (default).
    pub const EmaWarmup: Param = Param(sys::STOCHFLOW_PARAM_EMA_WARMUP);
    /// Rows per gradient block summed along one fixed tree (doc/distributed.md); 0 = off.
    pub const GradBlock: Param = Param(sys::STOCHFLOW_PARAM_GRAD_BLOCK);
    /// Regression target of the training step: 1 = each row's own dI/dt (default),
    /// 2 = its posterior mean over the batch's data rows (lower variance).
    pub const TrainTarget: Param = Param(sys::STOCHFLOW_PARAM_TRAIN_TARGET);
    pub const Threads: Param = Param(sys::STOCHFLOW_PARAM_THREADS);
    pub const EvalWeights: Param = Param(sys::STOCHFLOW_PARAM_EVAL_WEIGHTS);
    pub const Solver: Param = Param(sys::STOCHFLOW_PARAM_SOLVER);
    pub const Steps: Param = Param(sys::STOCHFLOW_PARAM_STEPS);
    pub const Rtol: Param = Param(sys::STOCHFLOW_PARAM_RTOL);
    pub const Atol: Param = Param(sys::STOCHFLOW_PARAM_ATOL);
    pub const HInit: Param = Param(sys::STOCHFLOW_PARAM_H_INIT);
    pub const HMin: Param = Param(sys::STOCHFLOW_PARAM_H_MIN);
    pub const MaxSteps: Param = Param(sys::STOCHFLOW_PARAM_MAX_STEPS);
    pub const LogpError: Param = Param(sys::STOCHFLOW_PARAM_LOGP_ERROR);
    pub const Trace: Param = Param(sys::STOCHFLOW_PARAM_TRACE);
    pub const Probes: Param = Param(sys::STOCHFLOW_PARAM_PROBES);
    pub const ProbeDist: Param = Param(sys::STOCHFLOW_PARAM_PROBE_DIST);
    /// Conditional models: per-row context dropout of training (doc/conditional.md).
    pub const CtxDropout: Param = Param(sys::STOCHFLOW_PARAM_CTX_DROPOUT);
    /// Conditional models: classifier-free guidance scale of the solver.
    pub const Guidance: Param = Param(sys::STOCHFLOW_PARAM_GUIDANCE);

    /// The parameter with this short name ("lr", "beta1", "grad_clip", "solver", "rtol",
    /// ...); `ErrorKind::Unsupported` for an unknown name.
    pub fn from_name(name: &str) -> Result<Param> {
        let c = cstring("parameter name", name)?;
        let mut key: c_int = 0;
        // SAFETY: valid out-pointer and NUL-terminated name.
        check(unsafe { sys::stochflow_param_key(&mut key, c.as_ptr()) })?;
        Ok(Param(key))
    }

    /// The parameter with this key, if the library knows it.
    pub fn from_key(key: i32) -> Option<Param> {
        Param(key).name().map(|_| Param(key))
    }

    /// The C key (STOCHFLOW_PARAM_*).
    pub fn key(self) -> i32 {
        self.0
    }

    /// The short name; None for a key the library does not know.
    pub fn name(self) -> Option<&'static str> {
        // SAFETY: NULL or a static NUL-terminated string.
        let p = unsafe { sys::stochflow_param_name(self.0) };
        if p.is_null() {
            None
        } else {
            unsafe { CStr::from_ptr(p) }.to_str().ok()
        }
    }

    /// Whether the parameter belongs to a [`Model`] (100s, 400s) rather than a [`Solver`].
    pub fn is_model(self) -> bool {
        matches!(self.0 / 100, 1 | 4)
    }

    /// Every parameter the library knows, in its table's order.
    pub fn all() -> Vec<Param> {
        // SAFETY: no arguments; indices below the count give keys.
        let n = unsafe { sys::stochflow_param_count() };
        (0..n)
            .map(|i| Param(unsafe { sys::stochflow_param_key_at(i) }))
            .collect()
    }
}

/// Minibatch coupling of base and data points (STOCHFLOW_COUPLING_*), for
/// [`coupling_assign`] and `Param::Coupling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coupling {
    Independent = 1,
    Ot = 2,
    Sinkhorn = 3,
}

/// (lo, hi, default) of a keyed parameter.
pub fn param_bounds(p: Param) -> Result<(f64, f64, f64)> {
    let (mut lo, mut hi, mut de) = (0.0, 0.0, 0.0);
    // SAFETY: three valid out-pointers.
    check(unsafe { sys::stochflow_param_bounds(&mut lo, &mut hi, &mut de, p.0) })?;
    Ok((lo, hi, de))
}

// ---- configuration ------------------------------------------------------------------

/// What a model is made of (a `stochflow_config` handle). Defaults: hidden 256,256,256,
/// SiLU, raw time, trigonometric interpolant, seed 0.
pub struct Config {
    h: *mut sys::stochflow_config,
}

impl Config {
    /// A default configuration for data dimension `dim`.
    pub fn new(dim: usize) -> Result<Config> {
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_config_new(&mut h, dim) })?;
        Ok(Config { h })
    }
    pub fn set_hidden(&mut self, widths: &[usize]) -> Result<()> {
        // SAFETY: widths.len() values are readable.
        check(unsafe { sys::stochflow_config_set_hidden(self.h, widths.len(), widths.as_ptr()) })
    }
    pub fn set_activation(&mut self, a: Activation) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_activation(self.h, a as c_int) })
    }
    pub fn set_interpolant(&mut self, i: Interpolant) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_interpolant(self.h, i as c_int) })
    }
    pub fn set_time_embedding(&mut self, e: TimeEmbedding) -> Result<()> {
        let (kind, f) = match e {
            TimeEmbedding::Raw => (sys::STOCHFLOW_TIME_RAW, 0),
            TimeEmbedding::Fourier(f) => (sys::STOCHFLOW_TIME_FOURIER, f),
        };
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_time_embedding(self.h, kind, f) })
    }
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_seed(self.h, seed) })
    }
    /// A conditional model: `n_ctx` context floats per row and/or `n_classes` labels
    /// (doc/conditional.md).
    pub fn set_context(&mut self, n_ctx: usize, n_classes: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_context(self.h, n_ctx, n_classes) })
    }
    /// (n_ctx, n_classes) of the configuration.
    pub fn context(&self) -> Result<(usize, usize)> {
        let (mut k, mut c) = (0usize, 0usize);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::stochflow_config_context(&mut k, &mut c, self.h) })?;
        Ok((k, c))
    }
    /// The learnable Fourier interpolant: `n_modes` sine modes on top of `base`.
    pub fn set_fourier_interpolant(&mut self, base: Interpolant, n_modes: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe {
            sys::stochflow_config_set_fourier_interpolant(self.h, base as c_int, n_modes)
        })
    }
    /// (base as STOCHFLOW_INTERP_*, number of modes) of a Fourier configuration.
    pub fn fourier_interpolant(&self) -> Result<(i32, usize)> {
        let (mut base, mut modes) = (0 as c_int, 0usize);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::stochflow_config_fourier_interpolant(&mut base, &mut modes, self.h) })?;
        Ok((base, modes))
    }
    pub fn dim(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_config_dim(self.h) }
    }
    pub fn hidden(&self) -> Vec<usize> {
        let mut n = 0usize;
        // SAFETY: valid handle; cap 0 with NULL asks for the count only.
        if unsafe { sys::stochflow_config_hidden(&mut n, ptr::null_mut(), 0, self.h) } < 0 {
            return Vec::new();
        }
        let mut w = vec![0usize; n];
        // SAFETY: w has room for n widths.
        unsafe { sys::stochflow_config_hidden(ptr::null_mut(), w.as_mut_ptr(), n, self.h) };
        w
    }
    /// Activation as its C number (STOCHFLOW_ACT_*).
    pub fn activation(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_config_activation(self.h) }
    }
    /// Interpolant as its C number (STOCHFLOW_INTERP_*).
    pub fn interpolant(&self) -> i32 {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_config_interpolant(self.h) }
    }
    pub fn time_embedding(&self) -> TimeEmbedding {
        let (mut kind, mut f) = (0 as c_int, 0usize);
        // SAFETY: valid handle and out-pointers (a valid handle cannot fail).
        unsafe { sys::stochflow_config_time_embedding(&mut kind, &mut f, self.h) };
        if kind == sys::STOCHFLOW_TIME_FOURIER {
            TimeEmbedding::Fourier(f)
        } else {
            TimeEmbedding::Raw
        }
    }
    pub fn seed(&self) -> u64 {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_config_seed(self.h) }
    }
    /// Make this a convolutional U-Net over NCHW images (doc/unet.md);
    /// `channels * height * width` must equal the configuration's dimension.
    pub fn set_unet(&mut self, u: &UNet) -> Result<()> {
        let mut o = sys::stochflow_unet_options::default();
        // SAFETY: o is a valid options struct of the size passed.
        check(unsafe {
            sys::stochflow_unet_options_init(&mut o, core::mem::size_of_val(&o))
        })?;
        if u.mult.is_empty() || u.mult.len() > sys::STOCHFLOW_UNET_MAX_LEVELS {
            return Err(Error::invalid(format!(
                "mult has {} entries, expected 1..={}",
                u.mult.len(),
                sys::STOCHFLOW_UNET_MAX_LEVELS
            )));
        }
        o.channels = u.channels;
        o.height = u.height;
        o.width = u.width;
        o.base = u.base;
        o.n_levels = u.mult.len();
        o.mult = [0; sys::STOCHFLOW_UNET_MAX_LEVELS];
        o.mult[..u.mult.len()].copy_from_slice(&u.mult);
        o.blocks = u.blocks;
        o.attn_mask = u.attn_mask;
        o.groups = u.groups;
        // SAFETY: valid handle and options.
        check(unsafe { sys::stochflow_config_set_unet(self.h, &o) })
    }
    /// Make this a residual MLP of `width` with `blocks` pre-norm residual blocks with
    /// LayerNorm (see `stochflow_config_set_resmlp`); the hidden widths are then ignored.
    pub fn set_resmlp(&mut self, width: usize, blocks: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_resmlp(self.h, width, blocks) })
    }
    /// The residual MLP's (width, blocks) (an `Invalid` error when this is not one).
    pub fn resmlp(&self) -> Result<(usize, usize)> {
        let (mut w, mut b) = (0usize, 0usize);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::stochflow_config_resmlp(&mut w, &mut b, self.h) })?;
        Ok((w, b))
    }
    /// Give the residual MLP `experts` gated linear experts on its output (0: none; see
    /// `stochflow_config_set_resmlp_experts`); call after [`Config::set_resmlp`].
    pub fn set_resmlp_experts(&mut self, experts: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_config_set_resmlp_experts(self.h, experts) })
    }
    /// The residual MLP's number of linear experts (an `Invalid` error when this is not
    /// a residual MLP).
    pub fn resmlp_experts(&self) -> Result<usize> {
        let mut k = 0usize;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::stochflow_config_resmlp_experts(&mut k, self.h) })?;
        Ok(k)
    }
    /// The architecture: [`Arch::Mlp`], [`Arch::ResMlp`] or [`Arch::UNet`].
    pub fn arch(&self) -> Arch {
        // SAFETY: valid handle.
        match unsafe { sys::stochflow_config_arch(self.h) } {
            sys::STOCHFLOW_ARCH_UNET => Arch::UNet,
            sys::STOCHFLOW_ARCH_RESMLP => Arch::ResMlp,
            _ => Arch::Mlp,
        }
    }
    /// The U-Net settings (an `Invalid` error when this is not a U-Net).
    pub fn unet(&self) -> Result<UNet> {
        let mut o = sys::stochflow_unet_options::default();
        // SAFETY: valid handle and out-struct.
        check(unsafe { sys::stochflow_config_unet(&mut o, self.h) })?;
        Ok(UNet {
            channels: o.channels,
            height: o.height,
            width: o.width,
            base: o.base,
            mult: o.mult[..o.n_levels.min(sys::STOCHFLOW_UNET_MAX_LEVELS)].to_vec(),
            blocks: o.blocks,
            attn_mask: o.attn_mask,
            groups: o.groups,
        })
    }
}

/// Velocity-field architecture of a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Mlp = 1,
    UNet = 2,
    ResMlp = 3,
}

/// U-Net settings for [`Config::set_unet`] (see `stochflow_config_set_unet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UNet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Channels of the first level.
    pub base: usize,
    /// Channel multiplier per level (1..=6 levels).
    pub mult: Vec<usize>,
    /// Residual blocks per level.
    pub blocks: usize,
    /// Bit l: self-attention at level l.
    pub attn_mask: u32,
    /// GroupNorm groups.
    pub groups: usize,
}

impl UNet {
    /// Images of `channels x height x width` with the command line's defaults: base 32,
    /// mult [1, 2, 2], 1 block, attention at the lowest level, 8 groups.
    pub fn new(channels: usize, height: usize, width: usize) -> UNet {
        UNet {
            channels,
            height,
            width,
            base: 32,
            mult: vec![1, 2, 2],
            blocks: 1,
            attn_mask: 1 << 2,
            groups: 8,
        }
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed exactly once.
        unsafe { sys::stochflow_config_free(self.h) }
    }
}

// SAFETY: a handle may move between threads; it is used by one thread at a time (&mut).
unsafe impl Send for Config {}

// ---- model --------------------------------------------------------------------------

/// A velocity network, its Adam optimizer and its random stream (a `stochflow_model`).
pub struct Model {
    h: *mut sys::stochflow_model,
    d: usize,
}

// SAFETY: the C library allows a handle on any thread, one at a time; &mut enforces that.
unsafe impl Send for Model {}

impl Model {
    fn adopt(h: *mut sys::stochflow_model) -> Model {
        // SAFETY: h is a fresh valid handle.
        let d = unsafe { sys::stochflow_model_dim(h) };
        Model { h, d }
    }

    /// A new model from a configuration (copied; `cfg` may be dropped afterwards).
    pub fn new(cfg: &Config) -> Result<Model> {
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer and config handle.
        check(unsafe { sys::stochflow_model_new(&mut h, cfg.h) })?;
        Ok(Model::adopt(h))
    }

    /// Load a checkpoint written by [`Model::save`] (from any language).
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Model> {
        let p = path_cstring(path.as_ref())?;
        let mut h = ptr::null_mut();
        // SAFETY: NUL-terminated path, valid out-pointer.
        check(unsafe { sys::stochflow_model_load(&mut h, p.as_ptr()) })?;
        Ok(Model::adopt(h))
    }

    /// A model from [`Model::to_bytes`] output.
    pub fn from_bytes(buf: &[u8]) -> Result<Model> {
        let mut h = ptr::null_mut();
        // SAFETY: buf.len() readable bytes.
        check(unsafe { sys::stochflow_model_load_buffer(&mut h, buf.as_ptr().cast(), buf.len()) })?;
        Ok(Model::adopt(h))
    }

    /// Write a checkpoint atomically.
    pub fn save<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let p = path_cstring(path.as_ref())?;
        // SAFETY: valid handle and NUL-terminated path.
        check(unsafe { sys::stochflow_model_save(self.h, p.as_ptr()) })
    }

    /// The checkpoint as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut size = 0usize;
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_model_serialized_size(&mut size, self.h) })?;
        let mut buf = vec![0u8; size];
        let mut written = 0usize;
        // SAFETY: buf has size writable bytes.
        check(unsafe {
            sys::stochflow_model_save_buffer(&mut written, buf.as_mut_ptr().cast(), size, self.h)
        })?;
        buf.truncate(written);
        Ok(buf)
    }

    /// An independent copy (through the checkpoint format).
    pub fn try_clone(&self) -> Result<Model> {
        Model::from_bytes(&self.to_bytes()?)
    }

    /// A copy of the model's configuration.
    pub fn config(&self) -> Result<Config> {
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_model_config(&mut h, self.h) })?;
        Ok(Config { h })
    }

    /// Data dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }
    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_model_num_params(self.h) }
    }
    /// Optimizer updates applied so far.
    pub fn step(&self) -> u64 {
        // SAFETY: valid handle.
        unsafe { sys::stochflow_model_step(self.h) }
    }

    /// Set a 100s or 400s keyed parameter (0 restores the default).
    pub fn set_param(&mut self, p: Param, value: f64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_model_set_param(self.h, p.0, value) })
    }
    /// Read a 100s or 400s keyed parameter.
    pub fn get_param(&self, p: Param) -> Result<f64> {
        let mut v = 0.0;
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_model_get_param(&mut v, self.h, p.0) })?;
        Ok(v)
    }

    /// (a(t), b(t), a'(t), b'(t)) of the model's interpolant.
    pub fn interpolant_eval(&self, t: f64) -> Result<[f64; 4]> {
        let mut out = [0f64; 4];
        // SAFETY: four writable doubles.
        check(unsafe { sys::stochflow_model_interpolant_eval(out.as_mut_ptr(), self.h, t) })?;
        Ok(out)
    }
    /// Copies of the learned Fourier coefficients (alpha, beta).
    pub fn interpolant_coefficients(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let mut m = 0usize;
        // SAFETY: NULL coefficient pointers ask only for the count.
        check(unsafe {
            sys::stochflow_model_interpolant_coefficients(
                ptr::null_mut(),
                ptr::null_mut(),
                &mut m,
                self.h,
            )
        })?;
        let (mut a, mut b) = (vec![0f64; m], vec![0f64; m]);
        // SAFETY: m writable doubles each.
        check(unsafe {
            sys::stochflow_model_interpolant_coefficients(
                a.as_mut_ptr(),
                b.as_mut_ptr(),
                &mut m,
                self.h,
            )
        })?;
        Ok((a, b))
    }
    /// Fit the standardization z = (x - shift) / scale on the rows of x (column mean and
    /// standard deviation; before training). A constant column is an error naming it.
    pub fn fit_standardization(&mut self, x: &[f32]) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        // SAFETY: x holds n * d floats.
        check(unsafe { sys::stochflow_model_fit_standardization(self.h, x.as_ptr(), n) })
    }
    /// Set the standardization (d shifts, d scales > 0), or remove it with None.
    pub fn set_standardization(&mut self, map: Option<(&[f64], &[f64])>) -> Result<()> {
        match map {
            // SAFETY: NULL, NULL removes the map.
            None => check(unsafe {
                sys::stochflow_model_set_standardization(self.h, ptr::null(), ptr::null())
            }),
            Some((shift, scale)) => {
                check_len("shift", shift.len(), self.d)?;
                check_len("scale", scale.len(), self.d)?;
                // SAFETY: d doubles each.
                check(unsafe {
                    sys::stochflow_model_set_standardization(self.h, shift.as_ptr(), scale.as_ptr())
                })
            }
        }
    }
    /// The standardization (shift, scale), or None when the model holds none.
    pub fn standardization(&self) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        let (mut shift, mut scale) = (vec![0f64; self.d], vec![0f64; self.d]);
        // SAFETY: d writable doubles each.
        let rc = unsafe {
            sys::stochflow_model_standardization(shift.as_mut_ptr(), scale.as_mut_ptr(), self.h)
        };
        check(rc)?;
        Ok(if rc == 1 { Some((shift, scale)) } else { None })
    }
    /// Fit a whitening map on the rows of x: z = L^-1 ((x - mean) / std), L the Cholesky
    /// factor of the correlation matrix (before training). A constant column, or one that
    /// is a linear combination of earlier ones, is an error naming the columns.
    pub fn fit_whitening(&mut self, x: &[f32]) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        // SAFETY: x holds n * d floats.
        check(unsafe { sys::stochflow_model_fit_whitening(self.h, x.as_ptr(), n) })
    }
    /// Set a whitening map: d shifts, d scales > 0, and chol (d * d, row-major,
    /// lower-triangular, positive diagonal). Remove it with `set_standardization(None)`.
    pub fn set_whitening(&mut self, shift: &[f64], scale: &[f64], chol: &[f64]) -> Result<()> {
        check_len("shift", shift.len(), self.d)?;
        check_len("scale", scale.len(), self.d)?;
        check_len("chol", chol.len(), self.d * self.d)?;
        // SAFETY: d, d and d * d doubles.
        check(unsafe {
            sys::stochflow_model_set_whitening(self.h, shift.as_ptr(), scale.as_ptr(), chol.as_ptr())
        })
    }
    /// The whitening factor L (d * d, row-major), or None when the model holds none (a
    /// per-column map or none: `standardization` gives shift and scale).
    pub fn whitening(&self) -> Result<Option<Vec<f64>>> {
        let mut l = vec![0f64; self.d * self.d];
        // SAFETY: d * d writable doubles.
        let rc = unsafe { sys::stochflow_model_whitening(l.as_mut_ptr(), self.h) };
        check(rc)?;
        Ok(if rc == 1 { Some(l) } else { None })
    }
    /// Fit the context map c' = (c - shift) / scale of a conditional model on context
    /// rows (n * n_ctx): every _ctx call then takes contexts in these units.
    pub fn fit_context_standardization(&mut self, ctx: &[f32]) -> Result<()> {
        let (k, _) = self.context()?;
        let n = rows("ctx", ctx.len(), k.max(1))?;
        // SAFETY: ctx holds n * n_ctx floats.
        check(unsafe { sys::stochflow_model_fit_context_standardization(self.h, ctx.as_ptr(), n) })
    }
    /// Set the context map (n_ctx shifts, n_ctx scales > 0), or remove it with None.
    pub fn set_context_standardization(&mut self, map: Option<(&[f64], &[f64])>) -> Result<()> {
        let (k, _) = self.context()?;
        let (sh, sc) = match map {
            None => (ptr::null(), ptr::null()),
            Some((shift, scale)) => {
                check_len("shift", shift.len(), k)?;
                check_len("scale", scale.len(), k)?;
                (shift.as_ptr(), scale.as_ptr())
            }
        };
        // SAFETY: NULL, NULL, or n_ctx doubles each.
        check(unsafe { sys::stochflow_model_set_context_standardization(self.h, sh, sc) })
    }
    /// The context map (shift, scale), or None when the model holds none.
    pub fn context_standardization(&self) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        let (k, _) = self.context()?;
        let (mut shift, mut scale) = (vec![0f64; k], vec![0f64; k]);
        // SAFETY: n_ctx writable doubles each.
        let rc = unsafe {
            sys::stochflow_model_context_standardization(shift.as_mut_ptr(), scale.as_mut_ptr(), self.h)
        };
        check(rc)?;
        Ok(if rc == 1 { Some((shift, scale)) } else { None })
    }
    /// Rows mapped into the network's space, (x - shift) / scale (whitened when the model
    /// holds a whitening map), or back (inverse).
    pub fn standardize(&self, x: &[f32], inverse: bool) -> Result<Vec<f32>> {
        let n = rows("x", x.len(), self.d)?;
        let mut out = vec![0f32; x.len()];
        // SAFETY: x and out hold n * d floats.
        check(unsafe {
            sys::stochflow_model_standardize(out.as_mut_ptr(), self.h, x.as_ptr(), n, inverse as c_int)
        })?;
        Ok(out)
    }

    /// (running path-length estimate, number of steps averaged).
    pub fn path_length(&self) -> Result<(f64, u64)> {
        let (mut v, mut c) = (0f64, 0u64);
        // SAFETY: valid out-pointers.
        check(unsafe { sys::stochflow_model_path_length(&mut v, &mut c, self.h) })?;
        Ok((v, c))
    }

    fn batch(
        &mut self,
        f: unsafe extern "C" fn(
            *mut f64,
            *mut sys::stochflow_model,
            *const f32,
            usize,
            *const f32,
            *const f32,
        ) -> c_int,
        x1: &[f32],
        x0: Option<&[f32]>,
        t: Option<&[f32]>,
    ) -> Result<f64> {
        let n = rows("x1", x1.len(), self.d)?;
        if let Some(x0) = x0 {
            check_len("x0", x0.len(), x1.len())?;
        }
        if let Some(t) = t {
            check_len("t", t.len(), n)?;
        }
        let mut loss = 0.0;
        // SAFETY: lengths checked above; NULL x0/t ask the library to draw them.
        check(unsafe { f(&mut loss, self.h, x1.as_ptr(), n, opt_ptr(x0), opt_ptr(t)) })?;
        Ok(loss)
    }

    /// Interpolant loss of a batch (n*d values), no update; x0 and t drawn by the library.
    pub fn loss(&mut self, x1: &[f32]) -> Result<f64> {
        self.batch(sys::stochflow_model_loss, x1, None, None)
    }
    /// As [`Model::loss`] with caller-given base points (n*d) and/or times (n).
    pub fn loss_with(&mut self, x1: &[f32], x0: Option<&[f32]>, t: Option<&[f32]>) -> Result<f64> {
        self.batch(sys::stochflow_model_loss, x1, x0, t)
    }
    /// One Adam step on a batch; returns the loss before the update.
    pub fn train_step(&mut self, x1: &[f32]) -> Result<f64> {
        self.batch(sys::stochflow_model_train_step, x1, None, None)
    }
    /// As [`Model::train_step`] with caller-given base points and/or times.
    pub fn train_step_with(
        &mut self,
        x1: &[f32],
        x0: Option<&[f32]>,
        t: Option<&[f32]>,
    ) -> Result<f64> {
        self.batch(sys::stochflow_model_train_step, x1, x0, t)
    }
    /// Overwrite the gradient buffer with the batch gradient; returns the loss.
    pub fn compute_gradient(&mut self, x1: &[f32]) -> Result<f64> {
        self.batch(sys::stochflow_model_compute_gradient, x1, None, None)
    }
    /// Clip, Adam, EMA, step + 1 using the gradient buffer.
    pub fn apply_gradient(&mut self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_model_apply_gradient(self.h) })
    }

    fn view(
        &mut self,
        f: unsafe extern "C" fn(*mut *mut f32, *mut usize, *mut sys::stochflow_model) -> c_int,
    ) -> Result<&mut [f32]> {
        let mut p = ptr::null_mut();
        let mut n = 0usize;
        // SAFETY: valid out-pointers; the buffer lives as long as the model, and the
        // returned borrow of &mut self prevents any other call while it is held.
        check(unsafe { f(&mut p, &mut n, self.h) })?;
        Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
    }
    /// The flat parameter buffer (borrowed from the model; writes go into it).
    pub fn parameters(&mut self) -> Result<&mut [f32]> {
        self.view(sys::stochflow_model_parameters)
    }
    /// The flat gradient buffer (borrowed from the model).
    pub fn gradients(&mut self) -> Result<&mut [f32]> {
        self.view(sys::stochflow_model_gradients)
    }

    /// (n_ctx, n_classes) of a conditional model; (0, 0) for an unconditional one.
    pub fn context(&self) -> Result<(usize, usize)> {
        let (mut k, mut c) = (0usize, 0usize);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::stochflow_model_context(&mut k, &mut c, self.h) })?;
        Ok((k, c))
    }

    /// Pointers to n rows of context (n*n_ctx) and labels (n), lengths checked.
    fn cond(
        &self,
        n: usize,
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
    ) -> Result<(*const f32, *const i32)> {
        let (k, _) = self.context()?;
        if let Some(c) = ctx {
            check_len("ctx", c.len(), n * k)?;
        }
        if let Some(l) = labels {
            check_len("labels", l.len(), n)?;
        }
        Ok((opt_ptr(ctx), labels.map_or(ptr::null(), |l| l.as_ptr())))
    }

    /// One Adam step on a batch x1 (n*d) with each row's context (n*n_ctx) and/or labels
    /// (n; -1 = none); returns the loss before the update.
    pub fn train_step_ctx(
        &mut self,
        x1: &[f32],
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
    ) -> Result<f64> {
        let n = rows("x1", x1.len(), self.d)?;
        let (c, l) = self.cond(n, ctx, labels)?;
        let mut loss = 0.0;
        // SAFETY: lengths checked; NULL x0/t ask the library to draw them.
        check(unsafe {
            sys::stochflow_model_train_step_ctx(
                &mut loss,
                self.h,
                x1.as_ptr(),
                c,
                l,
                n,
                ptr::null(),
                ptr::null(),
            )
        })?;
        Ok(loss)
    }

    /// One training step of the posterior flow on `n` fresh simulated pairs
    /// (doc/conditional.md): `sim(seed, step, theta, x)` fills theta (n*d, the flow's
    /// variable) and x (n*n_ctx, its context) from randomness keyed by (seed, step) and
    /// returns true, or false to fail the step (`ErrorKind::Callback`, model unchanged).
    /// A panic inside `sim` is caught and fails the step the same way.
    pub fn train_simulator<F>(&mut self, n: usize, mut sim: F) -> Result<f64>
    where
        F: FnMut(u64, u64, &mut [f32], &mut [f32]) -> bool,
    {
        let (k, _) = self.context()?;
        struct Job<'a> {
            f: &'a mut dyn FnMut(u64, u64, &mut [f32], &mut [f32]) -> bool,
            d: usize,
            k: usize,
        }
        unsafe extern "C" fn trampoline(
            user: *mut std::os::raw::c_void,
            n: usize,
            seed: u64,
            step: u64,
            theta: *mut f32,
            x: *mut f32,
        ) -> c_int {
            // SAFETY: user is the Job below, alive for the whole call; the library hands
            // buffers of n*d and n*n_ctx floats.
            let job = unsafe { &mut *(user as *mut Job<'_>) };
            let th = unsafe { std::slice::from_raw_parts_mut(theta, n * job.d) };
            let xs = unsafe { std::slice::from_raw_parts_mut(x, n * job.k) };
            let f = &mut job.f;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed, step, th, xs))) {
                Ok(true) => 0,
                _ => 1,
            }
        }
        let mut job = Job { f: &mut sim, d: self.d, k };
        let mut loss = 0.0;
        // SAFETY: the trampoline only runs during this call, on this thread.
        check(unsafe {
            sys::stochflow_model_train_simulator(
                &mut loss,
                self.h,
                Some(trampoline),
                &mut job as *mut Job<'_> as *mut std::os::raw::c_void,
                n,
            )
        })?;
        Ok(loss)
    }

    /// v(t, x | c) for a batch x (n*d) into v (n*d).
    pub fn velocity_ctx(
        &mut self,
        t: f64,
        x: &[f32],
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
        v: &mut [f32],
    ) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        check_len("v", v.len(), x.len())?;
        let (c, l) = self.cond(n, ctx, labels)?;
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_model_velocity_ctx(v.as_mut_ptr(), self.h, t, x.as_ptr(), c, l, n)
        })
    }

    /// v(t, x) for a batch x (n*d) into v (n*d).
    pub fn velocity(&mut self, t: f64, x: &[f32], v: &mut [f32]) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        check_len("v", v.len(), x.len())?;
        // SAFETY: lengths checked.
        check(unsafe { sys::stochflow_model_velocity(v.as_mut_ptr(), self.h, t, x.as_ptr(), n) })
    }
    /// out_i = u_i^T dv(t, x_i)/dx_i.
    pub fn velocity_vjp(&mut self, t: f64, x: &[f32], u: &[f32], out: &mut [f32]) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        check_len("u", u.len(), x.len())?;
        check_len("out", out.len(), x.len())?;
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_model_velocity_vjp(
                out.as_mut_ptr(),
                self.h,
                t,
                x.as_ptr(),
                u.as_ptr(),
                n,
            )
        })
    }
    /// Exact divergence per point (div: n) and optionally v (n*d).
    pub fn divergence(
        &mut self,
        t: f64,
        x: &[f32],
        div: &mut [f32],
        v: Option<&mut [f32]>,
    ) -> Result<()> {
        let n = rows("x", x.len(), self.d)?;
        check_len("div", div.len(), n)?;
        if let Some(v) = &v {
            check_len("v", v.len(), x.len())?;
        }
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_model_divergence(div.as_mut_ptr(), opt_mut(v), self.h, t, x.as_ptr(), n)
        })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed exactly once.
        unsafe { sys::stochflow_model_free(self.h) }
    }
}

// ---- solver -------------------------------------------------------------------------

/// Integration, sampling and log-density settings (a `stochflow_solver` handle).
/// Defaults: dopri5, rtol = atol = 1e-5, exact trace.
pub struct Solver {
    h: *mut sys::stochflow_solver,
}

// SAFETY: as for Model.
unsafe impl Send for Solver {}

/// Statistics of the last solver call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub nfe: f64,
    pub accepted: f64,
    pub rejected: f64,
    pub t: f64,
}

impl Solver {
    pub fn new() -> Result<Solver> {
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_solver_new(&mut h) })?;
        Ok(Solver { h })
    }
    /// Set a 200s or 300s keyed parameter (0 restores the default).
    pub fn set_param(&mut self, p: Param, value: f64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_solver_set_param(self.h, p.0, value) })
    }
    pub fn get_param(&self, p: Param) -> Result<f64> {
        let mut v = 0.0;
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_solver_get_param(&mut v, self.h, p.0) })?;
        Ok(v)
    }
    /// Choose the solver; `steps` is used by the fixed-step ones (0 = default 100).
    pub fn set_solver(&mut self, kind: SolverKind, steps: usize) -> Result<()> {
        self.set_param(Param::Solver, kind as i32 as f64)?;
        self.set_param(Param::Steps, steps as f64)
    }
    /// Choose the divergence estimator.
    pub fn set_trace(&mut self, trace: Trace) -> Result<()> {
        match trace {
            Trace::Exact => self.set_param(Param::Trace, sys::STOCHFLOW_TRACE_EXACT as f64),
            Trace::Hutchinson(k) => {
                self.set_param(Param::Trace, sys::STOCHFLOW_TRACE_HUTCHINSON as f64)?;
                self.set_param(Param::Probes, k as f64)
            }
        }
    }
    /// Seed of the Hutchinson probes.
    pub fn set_seed(&mut self, seed: u64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_solver_set_seed(self.h, seed) })
    }
    pub fn stats(&self) -> Result<Stats> {
        let get = |k| -> Result<f64> {
            let mut v = 0.0;
            // SAFETY: valid out-pointer.
            check(unsafe { sys::stochflow_solver_stat(&mut v, self.h, k) })?;
            Ok(v)
        };
        Ok(Stats {
            nfe: get(sys::STOCHFLOW_STAT_NFE)?,
            accepted: get(sys::STOCHFLOW_STAT_ACCEPTED)?,
            rejected: get(sys::STOCHFLOW_STAT_REJECTED)?,
            t: get(sys::STOCHFLOW_STAT_T)?,
        })
    }

    /// Integrate x (n*d) in place from t0 to t1; dlogp (n) and se (n) are optional.
    pub fn integrate(
        &mut self,
        m: &mut Model,
        x: &mut [f32],
        t0: f64,
        t1: f64,
        dlogp: Option<&mut [f32]>,
        se: Option<&mut [f32]>,
    ) -> Result<()> {
        let n = rows("x", x.len(), m.d)?;
        if let Some(a) = &dlogp {
            check_len("dlogp", a.len(), n)?;
        }
        if let Some(a) = &se {
            check_len("se", a.len(), n)?;
        }
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_solver_integrate(
                opt_mut(dlogp),
                opt_mut(se),
                self.h,
                m.h,
                x.as_mut_ptr(),
                n,
                t0,
                t1,
            )
        })
    }

    /// log rho_t(x) for each point of x (n*d), as a new vector of n values.
    pub fn log_prob(&mut self, m: &mut Model, x: &[f32], t: f64) -> Result<Vec<f32>> {
        self.log_prob_into(m, x, t, None)
    }

    /// log rho_t(x) and the Hutchinson standard errors (0 with the exact trace, NaN with
    /// one probe), as new vectors of n values each.
    pub fn log_prob_with_se(
        &mut self,
        m: &mut Model,
        x: &[f32],
        t: f64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = rows("x", x.len(), m.d)?;
        let mut se = vec![0f32; n];
        let logp = self.log_prob_into(m, x, t, Some(&mut se))?;
        Ok((logp, se))
    }

    fn log_prob_into(
        &mut self,
        m: &mut Model,
        x: &[f32],
        t: f64,
        se: Option<&mut [f32]>,
    ) -> Result<Vec<f32>> {
        let n = rows("x", x.len(), m.d)?;
        let mut logp = vec![0f32; n];
        // SAFETY: logp has n values, se (when given) n too, x n*d.
        check(unsafe {
            sys::stochflow_solver_log_prob(
                logp.as_mut_ptr(),
                opt_mut(se),
                self.h,
                m.h,
                x.as_ptr(),
                n,
                t,
            )
        })?;
        Ok(logp)
    }

    /// log p(x | c) (the guided flow's density with a guidance scale) for x (n*d) given
    /// each row's context (n*n_ctx) and/or labels (n).
    pub fn log_prob_ctx(
        &mut self,
        m: &mut Model,
        x: &[f32],
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
        t: f64,
    ) -> Result<Vec<f32>> {
        let n = rows("x", x.len(), m.d)?;
        let (c, l) = m.cond(n, ctx, labels)?;
        let mut logp = vec![0f32; n];
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_solver_log_prob_ctx(
                logp.as_mut_ptr(),
                ptr::null_mut(),
                self.h,
                m.h,
                x.as_ptr(),
                c,
                l,
                n,
                t,
            )
        })?;
        Ok(logp)
    }

    /// Samples of p(x | c) (guided by the solver's Guidance) into x (n*d), given each
    /// sample's context (n*n_ctx) and/or labels (n); logp (n) optional.
    pub fn sample_ctx(
        &mut self,
        m: &mut Model,
        x: &mut [f32],
        logp: Option<&mut [f32]>,
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
        seed: u64,
    ) -> Result<()> {
        let n = rows("x", x.len(), m.d)?;
        if let Some(a) = &logp {
            check_len("logp", a.len(), n)?;
        }
        let (c, l) = m.cond(n, ctx, labels)?;
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_solver_sample_ctx(x.as_mut_ptr(), opt_mut(logp), self.h, m.h, c, l, n, seed)
        })
    }

    /// n = x.len() / d samples into x; logp (n) optional; base draws keyed by seed.
    pub fn sample(
        &mut self,
        m: &mut Model,
        x: &mut [f32],
        logp: Option<&mut [f32]>,
        seed: u64,
    ) -> Result<()> {
        let n = rows("x", x.len(), m.d)?;
        if let Some(a) = &logp {
            check_len("logp", a.len(), n)?;
        }
        // SAFETY: lengths checked.
        check(unsafe {
            sys::stochflow_solver_sample(x.as_mut_ptr(), opt_mut(logp), self.h, m.h, n, seed)
        })
    }

    /// Convenience: n samples and their log-densities as new vectors.
    pub fn sample_with_log_prob(
        &mut self,
        m: &mut Model,
        n: usize,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut x = vec![0f32; n * m.d];
        let mut logp = vec![0f32; n];
        self.sample(m, &mut x, Some(&mut logp), seed)?;
        Ok((x, logp))
    }
}

impl Drop for Solver {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed exactly once.
        unsafe { sys::stochflow_solver_free(self.h) }
    }
}

// ---- utilities ----------------------------------------------------------------------

/// Minibatch coupling of x0 and x1 (n*d each): perm[i] is the x0 row paired with x1 row
/// i; returns the mean paired cost. `reg` is Sinkhorn's relative regularization.
pub fn coupling_assign(
    perm: &mut [usize],
    x0: &[f32],
    x1: &[f32],
    d: usize,
    mode: Coupling,
    reg: f64,
    seed: u64,
) -> Result<f64> {
    if d == 0 {
        return Err(Error::invalid("dimension d must be positive".to_string()));
    }
    let n = rows("x1", x1.len(), d)?;
    check_len("x0", x0.len(), x1.len())?;
    check_len("perm", perm.len(), n)?;
    let mut cost = 0f64;
    // SAFETY: lengths checked.
    check(unsafe {
        sys::stochflow_coupling_assign(
            perm.as_mut_ptr(),
            &mut cost,
            x0.as_ptr(),
            x1.as_ptr(),
            n,
            d,
            mode as c_int,
            reg,
            seed,
        )
    })?;
    Ok(cost)
}

/// Standard normal draws into out; out[i] depends only on (seed, stream, i).
pub fn random_normal(out: &mut [f32], seed: u64, stream: u64) -> Result<()> {
    // SAFETY: out.len() writable floats.
    check(unsafe { sys::stochflow_random_normal(out.as_mut_ptr(), out.len(), seed, stream) })
}

/// Uniform draws in [0, 1) into out; out[i] depends only on (seed, stream, i).
pub fn random_uniform(out: &mut [f64], seed: u64, stream: u64) -> Result<()> {
    // SAFETY: out.len() writable doubles.
    check(unsafe { sys::stochflow_random_uniform(out.as_mut_ptr(), out.len(), seed, stream) })
}

/// out.len()/2 points of a built-in 2-D toy density (deterministic in name, seed, stream).
pub fn toy_sample(out: &mut [f32], name: &str, seed: u64, stream: u64) -> Result<()> {
    let n = rows("out", out.len(), 2)?;
    let c = cstring("name", name)?;
    // SAFETY: 2n writable floats, NUL-terminated name.
    check(unsafe { sys::stochflow_toy_sample(out.as_mut_ptr(), c.as_ptr(), n, seed, stream) })
}

/// Names of the built-in toys.
pub fn toy_names() -> Vec<String> {
    // SAFETY: indices below the count give static strings.
    let n = unsafe { sys::stochflow_toy_count() };
    (0..n)
        .map(|i| {
            unsafe { CStr::from_ptr(sys::stochflow_toy_name(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// True log-density of a toy known in closed form into logp (n); returns its entropy.
pub fn toy_log_density(name: &str, x: &[f32], logp: &mut [f32]) -> Result<f64> {
    let n = rows("x", x.len(), 2)?;
    check_len("logp", logp.len(), n)?;
    let c = cstring("name", name)?;
    let mut ent = 0.0;
    // SAFETY: lengths checked.
    check(unsafe {
        sys::stochflow_toy_log_density(logp.as_mut_ptr(), &mut ent, c.as_ptr(), x.as_ptr(), n)
    })?;
    Ok(ent)
}

/// Write an 8-bit PNG (channels 1, 3 or 4; pixels row-major, interleaved).
pub fn png_write<P: AsRef<Path>>(
    path: P,
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: i32,
) -> Result<()> {
    let want = (width as usize)
        .checked_mul(height as usize)
        .and_then(|v| v.checked_mul(channels.max(0) as usize))
        .ok_or_else(|| Error::invalid("image size overflows".to_string()))?;
    check_len("pixels", pixels.len(), want)?;
    let p = path_cstring(path.as_ref())?;
    // SAFETY: length checked.
    check(unsafe { sys::stochflow_png_write(p.as_ptr(), pixels.as_ptr(), width, height, channels) })
}

// ---- image data (doc/images.md) -------------------------------------------------------

/// 8-bit images loaded by [`images_load`]: `count x channels x height x width` bytes,
/// planar (NCHW), owned by the C library and freed on `Drop`.
pub struct Images {
    ptr: *mut u8,
    pub count: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

// SAFETY: a plain heap buffer, not tied to a thread.
unsafe impl Send for Images {}
unsafe impl Sync for Images {}

impl Images {
    /// Bytes per image (`channels * height * width`).
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    /// All pixels, image after image, each planar.
    pub fn pixels(&self) -> &[u8] {
        // SAFETY: the library allocated count * image_len bytes at ptr (non-NULL on success).
        unsafe { std::slice::from_raw_parts(self.ptr, self.count * self.image_len()) }
    }
    /// Image i (panics when i >= count).
    pub fn image(&self, i: usize) -> &[u8] {
        let k = self.image_len();
        &self.pixels()[i * k..(i + 1) * k]
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        // SAFETY: ptr came from stochflow_images_load; freed exactly once.
        unsafe { sys::stochflow_images_free(self.ptr) }
    }
}

/// Load 8-bit images: `source` is `"idx:PATH"` (IDX unsigned-byte file, raw or gzip) or
/// `"pngdir:PATH"` (the directory's .png files in name order); at most `max_count`
/// images (0 = all).
pub fn images_load(source: &str, max_count: usize) -> Result<Images> {
    let c = cstring("source", source)?;
    let mut im = Images {
        ptr: ptr::null_mut(),
        count: 0,
        channels: 0,
        height: 0,
        width: 0,
    };
    // SAFETY: valid out-pointers and NUL-terminated source.
    let st = unsafe {
        sys::stochflow_images_load(
            &mut im.ptr,
            &mut im.count,
            &mut im.channels,
            &mut im.height,
            &mut im.width,
            c.as_ptr(),
            max_count,
        )
    };
    if st < 0 {
        im.ptr = ptr::null_mut(); // nothing to free (the library set it to NULL)
        return Err(Error::from_c(st));
    }
    Ok(im)
}

/// Uniform dequantization into `out` (same length as `pixels`), in [-1, 1):
/// `2 (p + u) / 256 - 1` with `u` depending only on (seed, stream, index).
pub fn images_dequantize(out: &mut [f32], pixels: &[u8], seed: u64, stream: u64) -> Result<()> {
    check_len("out", out.len(), pixels.len())?;
    // SAFETY: lengths checked.
    check(unsafe {
        sys::stochflow_images_dequantize(
            out.as_mut_ptr(),
            pixels.as_ptr(),
            pixels.len(),
            seed,
            stream,
        )
    })
}

/// Bin centres: `out[i] = 2 (p[i] + 0.5) / 256 - 1`.
pub fn images_to_float(out: &mut [f32], pixels: &[u8]) -> Result<()> {
    check_len("out", out.len(), pixels.len())?;
    // SAFETY: lengths checked.
    check(unsafe {
        sys::stochflow_images_to_float(out.as_mut_ptr(), pixels.as_ptr(), pixels.len())
    })
}

/// Back to bytes: `clamp(floor((x + 1) 128), 0, 255)`, NaN gives 0.
pub fn images_quantize(out: &mut [u8], x: &[f32]) -> Result<()> {
    check_len("out", out.len(), x.len())?;
    // SAFETY: lengths checked.
    check(unsafe { sys::stochflow_images_quantize(out.as_mut_ptr(), x.as_ptr(), x.len()) })
}

/// Bits per dimension of a log-density (nats) of dequantized data in [-1, 1]^dim:
/// `-logp / (dim ln 2) + 7`; NaN when dim is 0.
pub fn bits_per_dim(logp: f64, dim: usize) -> f64 {
    // SAFETY: pure function.
    unsafe { sys::stochflow_bits_per_dim(logp, dim) }
}

/// Write float images in [-1, 1] (`n x channels x height x width`, planar; n from the
/// slice length) as one PNG grid with 2-pixel borders, `ncols` per row (0 = ceil(sqrt n)).
pub fn images_write_grid<P: AsRef<Path>>(
    path: P,
    images: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    ncols: usize,
) -> Result<()> {
    let per = channels
        .checked_mul(height)
        .and_then(|v| v.checked_mul(width))
        .filter(|&v| v > 0)
        .ok_or_else(|| Error::invalid("image size is 0 or overflows".to_string()))?;
    let n = rows("images", images.len(), per)?;
    let p = path_cstring(path.as_ref())?;
    // SAFETY: n * per floats readable.
    check(unsafe {
        sys::stochflow_images_write_grid(
            p.as_ptr(),
            images.as_ptr(),
            n,
            channels,
            height,
            width,
            ncols,
        )
    })
}

// ---- the C trainer and data readers (doc/training.md, doc/data.md) -----------------

mod trainer;
pub use trainer::{
    parse_csv, parse_npy, read_csv, read_npy, Matrix, Standardize, StopReason, TrainStats, Trainer,
    TrainerParam,
};

// ---- stochastic interpolants: objectives and SDE sampling (doc/sde.md) ---------------

mod sde;
pub use sde::{Gamma, Objective, Sde};
