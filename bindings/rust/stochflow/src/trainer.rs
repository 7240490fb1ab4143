//! The C trainer (`stochflow_trainer`, doc/training.md) and the C data readers
//! (`stochflow_data_*`, doc/data.md): the same fit surface as Python's
//! `stochflow.Trainer`, thin over the C library.
use std::os::raw::{c_int, c_void};
use std::path::Path;
use std::ptr;

use super::{check, path_cstring, rows, sys, Model, Param, Result, SolverKind};

/// Keyed parameters of the trainer (`STOCHFLOW_TRAINER_*`, 500s); 0 restores a default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum TrainerParam {
    BatchSize = 500,
    MaxSteps = 501,
    MaxSeconds = 502,
    EvalEvery = 503,
    Patience = 504,
    ValFraction = 505,
    ValSubset = 506,
    Seed = 507,
    MinDelta = 508,
    /// 1 = install the best-evaluated weights at the end (default), 2 = keep the last.
    KeepBest = 509,
    /// 1 = set the model's LR_TOTAL_STEPS to MaxSteps (default), 2 = leave it.
    SetHorizon = 510,
    /// 1 = fit the model's per-column standardization on the training rows when it holds
    /// none and has not trained (the default of `Trainer::new`), 2 = use the model's as it
    /// is, 3 = fit a whitening map instead (doc/data.md); see `Trainer::set_standardize`.
    Standardize = 511,
}

/// What the trainer fits on the training rows of a model without a map (doc/data.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standardize {
    /// Per column: mean and standard deviation (the default of `Trainer::new`).
    Diag = 1,
    /// Nothing: the model's map (or none) is used as it is.
    None = 2,
    /// Whitening: mean and the Cholesky factor of the covariance.
    Whiten = 3,
}

/// Why a fit stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    None,
    Steps,
    Time,
    Patience,
    Cancelled,
}

/// Statistics of the last fit (`STOCHFLOW_TRAINER_STAT_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainStats {
    pub best_nll: f64,
    pub best_step: u64,
    pub final_nll: f64,
    pub final_se: f64,
    pub steps: u64,
    pub evals: u64,
    pub stop: StopReason,
    pub last_loss: f64,
    pub train_rows: usize,
    pub val_rows: usize,
}

/// A `stochflow_trainer` handle: minibatch epochs, scheduled validation, best weights,
/// patience, budgets; bitwise reproducible and resumable (doc/training.md).
pub struct Trainer {
    h: *mut sys::stochflow_trainer,
}

// SAFETY: as for Model: one thread at a time, enforced by &mut.
unsafe impl Send for Trainer {}

/// The closure behind the C progress callback, and the panic it may have raised.
struct Progress<'a> {
    f: &'a mut dyn FnMut(u64, f64, f64, f64) -> bool,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

unsafe extern "C" fn trampoline(
    user: *mut c_void,
    step: u64,
    loss: f64,
    val: f64,
    se: f64,
) -> c_int {
    // SAFETY: user is the &mut Progress passed by fit_with_progress for this call only.
    let p = unsafe { &mut *(user as *mut Progress) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (p.f)(step, loss, val, se))) {
        Ok(stop) => stop as c_int,
        Err(e) => {
            p.panic = Some(e);
            1
        }
    }
}

impl Trainer {
    /// A trainer with the C defaults, except the standardization: on (fitted on the
    /// training rows and stored in the model; `set_param(TrainerParam::Standardize, 2.0)`
    /// turns it off).
    pub fn new() -> Result<Trainer> {
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_trainer_new(&mut h) })?;
        let mut tr = Trainer { h };
        tr.set_param(TrainerParam::Standardize, 1.0)?;
        Ok(tr)
    }
    pub fn set_param(&mut self, p: TrainerParam, value: f64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_trainer_set_param(self.h, p as c_int, value) })
    }
    pub fn get_param(&self, p: TrainerParam) -> Result<f64> {
        let mut v = 0.0;
        // SAFETY: valid out-pointer and handle.
        check(unsafe { sys::stochflow_trainer_get_param(&mut v, self.h, p as c_int) })?;
        Ok(v)
    }
    /// (lo, hi, default) of a trainer parameter.
    pub fn param_bounds(p: TrainerParam) -> Result<(f64, f64, f64)> {
        let (mut lo, mut hi, mut de) = (0.0, 0.0, 0.0);
        // SAFETY: valid out-pointers.
        check(unsafe {
            sys::stochflow_trainer_param_bounds(&mut lo, &mut hi, &mut de, p as c_int)
        })?;
        Ok((lo, hi, de))
    }
    fn solver(&mut self) -> Result<*mut sys::stochflow_solver> {
        let mut s = ptr::null_mut();
        // SAFETY: valid out-pointer; the solver is borrowed from the trainer.
        check(unsafe { sys::stochflow_trainer_solver(&mut s, self.h) })?;
        Ok(s)
    }
    /// Set a 200s/300s parameter of the validation solver.
    pub fn set_solver_param(&mut self, p: Param, value: f64) -> Result<()> {
        let s = self.solver()?;
        // SAFETY: s lives as long as the trainer.
        check(unsafe { sys::stochflow_solver_set_param(s, p.key(), value) })
    }
    /// What the trainer fits on the training rows (`TrainerParam::Standardize`).
    pub fn set_standardize(&mut self, s: Standardize) -> Result<()> {
        self.set_param(TrainerParam::Standardize, s as i32 as f64)
    }
    /// The validation solver and its step count (fixed-step solvers).
    pub fn set_solver(&mut self, kind: SolverKind, steps: usize) -> Result<()> {
        self.set_solver_param(Param::Solver, kind as i32 as f64)?;
        self.set_solver_param(Param::Steps, steps as f64)
    }

    fn run(&mut self, m: &mut Model, x: &[f32], xval: Option<&[f32]>) -> Result<()> {
        let n = rows("x", x.len(), m.d)?;
        let nval = match xval {
            Some(v) => rows("xval", v.len(), m.d)?,
            None => 0,
        };
        let vp = xval.map_or(ptr::null(), |v| v.as_ptr());
        // SAFETY: lengths checked; the handles are valid.
        check(unsafe { sys::stochflow_trainer_fit(self.h, m.h, x.as_ptr(), n, vp, nval) })
    }

    /// Train m on the rows of x (n*d values), validating on xval or a VAL_FRACTION split.
    pub fn fit(&mut self, m: &mut Model, x: &[f32], xval: Option<&[f32]>) -> Result<()> {
        // SAFETY: no callback.
        check(unsafe { sys::stochflow_trainer_set_progress(self.h, None, ptr::null_mut()) })?;
        self.run(m, x, xval)
    }

    /// As [`Trainer::fit`], calling f(step, loss, val_nll, val_se) after every step
    /// (val_nll is NaN between evaluations); f returning true stops the fit with
    /// `ErrorKind::Cancelled`. A panic in f stops the fit and is resumed here.
    pub fn fit_with_progress<F: FnMut(u64, f64, f64, f64) -> bool>(
        &mut self,
        m: &mut Model,
        x: &[f32],
        xval: Option<&[f32]>,
        mut f: F,
    ) -> Result<()> {
        let mut p = Progress {
            f: &mut f,
            panic: None,
        };
        let user = &mut p as *mut Progress as *mut c_void;
        // SAFETY: p outlives the fit; the callback is removed before p goes away.
        check(unsafe { sys::stochflow_trainer_set_progress(self.h, Some(trampoline), user) })?;
        let r = self.run(m, x, xval);
        // SAFETY: valid handle.
        unsafe { sys::stochflow_trainer_set_progress(self.h, None, ptr::null_mut()) };
        if let Some(e) = p.panic.take() {
            std::panic::resume_unwind(e);
        }
        r
    }

    /// The early-stopping state as bytes (doc/training.md): with a model checkpoint, a
    /// resumed fit stops and ends as the uninterrupted one would.
    pub fn state_to_bytes(&self) -> Result<Vec<u8>> {
        let mut size = 0usize;
        // SAFETY: valid out-pointer and handle.
        check(unsafe { sys::stochflow_trainer_state_size(&mut size, self.h) })?;
        let mut buf = vec![0u8; size];
        let mut written = 0usize;
        // SAFETY: buf holds size bytes.
        check(unsafe {
            sys::stochflow_trainer_save_state(
                &mut written,
                self.h,
                buf.as_mut_ptr() as *mut c_void,
                size,
            )
        })?;
        buf.truncate(written);
        Ok(buf)
    }
    /// Install a state from [`Trainer::state_to_bytes`].
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        // SAFETY: bytes is readable for its length.
        check(unsafe {
            sys::stochflow_trainer_load_state(self.h, bytes.as_ptr() as *const c_void, bytes.len())
        })
    }

    pub fn stats(&self) -> Result<TrainStats> {
        let get = |k| -> Result<f64> {
            let mut v = 0.0;
            // SAFETY: valid out-pointer and handle.
            check(unsafe { sys::stochflow_trainer_stat(&mut v, self.h, k) })?;
            Ok(v)
        };
        let stop = match get(sys::STOCHFLOW_TRAINER_STAT_STOP)? as i32 {
            sys::STOCHFLOW_TRAINER_STOP_STEPS => StopReason::Steps,
            sys::STOCHFLOW_TRAINER_STOP_TIME => StopReason::Time,
            sys::STOCHFLOW_TRAINER_STOP_PATIENCE => StopReason::Patience,
            sys::STOCHFLOW_TRAINER_STOP_CANCELLED => StopReason::Cancelled,
            _ => StopReason::None,
        };
        Ok(TrainStats {
            best_nll: get(sys::STOCHFLOW_TRAINER_STAT_BEST_NLL)?,
            best_step: get(sys::STOCHFLOW_TRAINER_STAT_BEST_STEP)? as u64,
            final_nll: get(sys::STOCHFLOW_TRAINER_STAT_FINAL_NLL)?,
            final_se: get(sys::STOCHFLOW_TRAINER_STAT_FINAL_SE)?,
            steps: get(sys::STOCHFLOW_TRAINER_STAT_STEPS)? as u64,
            evals: get(sys::STOCHFLOW_TRAINER_STAT_EVALS)? as u64,
            stop,
            last_loss: get(sys::STOCHFLOW_TRAINER_STAT_LAST_LOSS)?,
            train_rows: get(sys::STOCHFLOW_TRAINER_STAT_TRAIN_ROWS)? as usize,
            val_rows: get(sys::STOCHFLOW_TRAINER_STAT_VAL_ROWS)? as usize,
        })
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed exactly once.
        unsafe { sys::stochflow_trainer_free(self.h) }
    }
}

/// A matrix read by the library: `data` holds rows x cols values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

fn take(f: impl FnOnce(*mut *mut f32, *mut usize, *mut usize) -> c_int) -> Result<Matrix> {
    let (mut x, mut n, mut d) = (ptr::null_mut(), 0usize, 0usize);
    check(f(&mut x, &mut n, &mut d))?;
    // SAFETY: on success x holds n*d floats owned by the library until data_free.
    let data = unsafe { std::slice::from_raw_parts(x, n * d) }.to_vec();
    unsafe { sys::stochflow_data_free(x) };
    Ok(Matrix {
        data,
        rows: n,
        cols: d,
    })
}

/// Read a .npy file with the library's strict reader (bounds: 0 = library default).
pub fn read_npy<P: AsRef<Path>>(path: P, max_bytes: usize, max_values: usize) -> Result<Matrix> {
    let c = path_cstring(path.as_ref())?;
    // SAFETY: valid C string and out-pointers.
    take(|x, n, d| unsafe {
        sys::stochflow_data_read_npy(x, n, d, c.as_ptr(), max_bytes, max_values)
    })
}

/// Read a .csv file with the library's strict reader.
pub fn read_csv<P: AsRef<Path>>(path: P, max_bytes: usize, max_values: usize) -> Result<Matrix> {
    let c = path_cstring(path.as_ref())?;
    // SAFETY: valid C string and out-pointers.
    take(|x, n, d| unsafe {
        sys::stochflow_data_read_csv(x, n, d, c.as_ptr(), max_bytes, max_values)
    })
}

/// Parse .npy bytes.
pub fn parse_npy(bytes: &[u8], max_values: usize) -> Result<Matrix> {
    let p = bytes.as_ptr() as *const c_void;
    // SAFETY: p points at bytes.len() readable bytes.
    take(|x, n, d| unsafe { sys::stochflow_data_parse_npy(x, n, d, p, bytes.len(), max_values) })
}

/// Parse .csv text.
pub fn parse_csv(text: &[u8], max_values: usize) -> Result<Matrix> {
    let p = text.as_ptr() as *const c_void;
    // SAFETY: p points at text.len() readable bytes.
    take(|x, n, d| unsafe { sys::stochflow_data_parse_csv(x, n, d, p, text.len(), max_values) })
}
