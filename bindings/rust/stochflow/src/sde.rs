//! Stochastic interpolants: the training objective of a model (`Config::set_objective`)
//! and the SDE sampler over a drift model and a score model (`Sde`). doc/sde.md.
use std::os::raw::{c_int, c_void};
use std::ptr;

use crate::{check, rows, Config, Error, Model, Result};
use stochflow_sys as sys;

/// The field a model learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// v = E[a' x0 + b' x1 | x_t] (the ODE training with `Gamma::Zero`)
    Velocity = 1,
    /// b = E[a' x0 + b' x1 + gamma' z | x_t]
    Drift = 2,
    /// s = grad log rho_t = -E[z | x_t] / gamma
    Score = 3,
    /// eta = -E[z | x_t]
    Denoiser = 4,
}

/// The latent noise schedule gamma(t).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gamma {
    Zero,
    /// sqrt(t (1 - t))
    Brownian,
    /// sqrt(c t (1 - t))
    BrownianScaled(f64),
    /// t (1 - t)
    Quadratic,
    /// sin^2(pi t)
    Sin2,
}

impl Gamma {
    fn code(self) -> (c_int, f64) {
        match self {
            Gamma::Zero => (sys::STOCHFLOW_GAMMA_ZERO, 0.0),
            Gamma::Brownian => (sys::STOCHFLOW_GAMMA_BROWNIAN, 0.0),
            Gamma::BrownianScaled(c) => (sys::STOCHFLOW_GAMMA_BROWNIAN_SCALED, c),
            Gamma::Quadratic => (sys::STOCHFLOW_GAMMA_QUADRATIC, 0.0),
            Gamma::Sin2 => (sys::STOCHFLOW_GAMMA_SIN2, 0.0),
        }
    }
}

impl Config {
    /// What a model built from this configuration learns (two-sided interpolant with the
    /// configuration's schedule); antithetic: pairs of opposite latent noise.
    pub fn set_objective(&mut self, obj: Objective, gamma: Gamma, antithetic: bool) -> Result<()> {
        let (g, scale) = gamma.code();
        let flags = if antithetic { sys::STOCHFLOW_OBJECTIVE_ANTITHETIC } else { 0 };
        // SAFETY: valid handle.
        check(unsafe {
            sys::stochflow_config_set_objective(
                self.h,
                obj as c_int,
                sys::STOCHFLOW_SI_TWO_SIDED,
                g,
                scale,
                flags,
            )
        })
    }

    /// (field, gamma, gamma scale, antithetic) as the STOCHFLOW_* codes.
    pub fn objective(&self) -> Result<(c_int, c_int, f64, bool)> {
        let (mut f, mut g, mut fl, mut sc) = (0, 0, 0, 0.0);
        // SAFETY: valid out-pointers (kind not requested) and handle.
        check(unsafe {
            sys::stochflow_config_objective(&mut f, ptr::null_mut(), &mut g, &mut sc, &mut fl, self.h)
        })?;
        Ok((f, g, sc, fl & sys::STOCHFLOW_OBJECTIVE_ANTITHETIC != 0))
    }
}

/// An SDE sampler (a `stochflow_sde` handle) set up for a drift model and an optional
/// score model as the CLI's `sample --sde` does: the score model's field and interpolant;
/// without one, the score from the velocity of a gamma-free model. With a denoiser or
/// the score from the velocity, the first and last steps are noise-free.
pub struct Sde {
    h: *mut sys::stochflow_sde,
    eps_window: Box<[f64; 2]>, // eps, h: read by the eps schedule while the handle lives
}

// SAFETY: one thread at a time (&mut).
unsafe impl Send for Sde {}

impl Drop for Sde {
    fn drop(&mut self) {
        // SAFETY: owned handle.
        unsafe { sys::stochflow_sde_free(self.h) }
    }
}

unsafe extern "C" fn eps_inside(user: *mut c_void, t: f64) -> f64 {
    // SAFETY: user is the Sde's boxed [eps, step].
    let w = unsafe { &*(user as *const [f64; 2]) };
    if t > w[1] / 2.0 && t < 1.0 - w[1] / 2.0 {
        w[0]
    } else {
        0.0
    }
}

fn objective_of(m: &Model) -> Result<(c_int, c_int)> {
    let cfg = m.config()?;
    let (f, g, _, _) = cfg.objective()?;
    Ok((f, g))
}

impl Sde {
    /// Sampler of diffusion eps, `steps` uniform steps, Heun (or Euler-Maruyama with
    /// `heun = false`), `paths` likelihood paths per point, for these models.
    pub fn new(
        drift: &Model,
        score: Option<&Model>,
        eps: f64,
        steps: usize,
        heun: bool,
        paths: usize,
    ) -> Result<Sde> {
        let (fd, gd) = objective_of(drift)?;
        if fd == sys::STOCHFLOW_FIELD_SCORE || fd == sys::STOCHFLOW_FIELD_DENOISER {
            return Err(Error::invalid("the drift model was trained for the score".into()));
        }
        let fs = match score {
            Some(s) => {
                let (f, _) = objective_of(s)?;
                if f != sys::STOCHFLOW_FIELD_SCORE && f != sys::STOCHFLOW_FIELD_DENOISER {
                    return Err(Error::invalid("the score model was not trained for the score".into()));
                }
                f
            }
            None => {
                if gd != sys::STOCHFLOW_GAMMA_ZERO && eps > 0.0 {
                    return Err(Error::invalid("a model trained with a gamma needs its score model".into()));
                }
                sys::STOCHFLOW_FIELD_SCORE_FROM_VELOCITY
            }
        };
        let mut h = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::stochflow_sde_new(&mut h) })?;
        let mut s = Sde { h, eps_window: Box::new([eps, 1.0 / steps.max(1) as f64]) };
        let method = if heun { sys::STOCHFLOW_SDE_HEUN } else { sys::STOCHFLOW_SDE_EULER_MARUYAMA };
        let velocity = fd == sys::STOCHFLOW_FIELD_VELOCITY && gd != sys::STOCHFLOW_GAMMA_ZERO;
        let drift_kind = if velocity { sys::STOCHFLOW_FIELD_VELOCITY } else { sys::STOCHFLOW_FIELD_DRIFT };
        for (k, v) in [
            (sys::STOCHFLOW_PARAM_SDE_METHOD, method as f64),
            (sys::STOCHFLOW_PARAM_SDE_STEPS, steps as f64),
            (sys::STOCHFLOW_PARAM_SDE_EPS, eps),
            (sys::STOCHFLOW_PARAM_SDE_PATHS, paths as f64),
            (sys::STOCHFLOW_PARAM_SDE_DRIFT, drift_kind as f64),
            (sys::STOCHFLOW_PARAM_SDE_SCORE, fs as f64),
        ] {
            // SAFETY: valid handle.
            check(unsafe { sys::stochflow_sde_set_param(s.h, k, v) })?;
        }
        if score.is_some() || gd != sys::STOCHFLOW_GAMMA_ZERO {
            let owner = score.unwrap_or(drift);
            let mut si = ptr::null_mut();
            // SAFETY: valid out-pointer and model handle.
            check(unsafe { sys::stochflow_model_sinterp(&mut si, owner.h) })?;
            // SAFETY: si is valid; copied by the sampler, then freed.
            let rc = unsafe { sys::stochflow_sde_set_interpolant(s.h, si) };
            unsafe { sys::stochflow_sinterp_free(si) };
            check(rc)?;
        }
        if eps > 0.0 && fs != sys::STOCHFLOW_FIELD_SCORE {
            let user = &mut *s.eps_window as *mut [f64; 2] as *mut c_void;
            // SAFETY: the box outlives the handle (dropped with it).
            check(unsafe { sys::stochflow_sde_set_eps_schedule(s.h, Some(eps_inside), user) })?;
        }
        Ok(s)
    }

    /// Guidance scale w of a conditional model (STOCHFLOW_PARAM_SDE_GUIDANCE): every
    /// network output becomes (1 + w) f(c) - w f(none); 0 is unguided.
    pub fn set_guidance(&mut self, w: f64) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_sde_set_param(self.h, sys::STOCHFLOW_PARAM_SDE_GUIDANCE, w) })
    }

    /// Hutchinson divergences in the likelihood (one probe per path; for images) instead
    /// of exact ones (STOCHFLOW_PARAM_SDE_TRACE).
    pub fn set_hutchinson(&mut self, on: bool) -> Result<()> {
        let v = if on { sys::STOCHFLOW_TRACE_HUTCHINSON } else { sys::STOCHFLOW_TRACE_EXACT };
        // SAFETY: valid handle.
        check(unsafe { sys::stochflow_sde_set_param(self.h, sys::STOCHFLOW_PARAM_SDE_TRACE, v as f64) })
    }

    /// n = x.len() / d samples from N(0, I) at t = 0 to t = 1, keyed by seed.
    pub fn sample(
        &mut self,
        x: &mut [f32],
        drift: &mut Model,
        score: Option<&mut Model>,
        seed: u64,
    ) -> Result<()> {
        self.sample_ctx(x, drift, score, None, None, seed)
    }

    /// `sample` for a conditional model: each row's context (n*n_ctx) and/or label (n;
    /// -1 = none), given to the drift and the score model.
    pub fn sample_ctx(
        &mut self,
        x: &mut [f32],
        drift: &mut Model,
        score: Option<&mut Model>,
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
        seed: u64,
    ) -> Result<()> {
        let n = rows("x", x.len(), drift.d)?;
        let (c, l) = drift.cond(n, ctx, labels)?;
        let sh = score.map_or(ptr::null_mut(), |m| m.h);
        // SAFETY: lengths checked, handles valid.
        check(unsafe { sys::stochflow_sde_sample_ctx(x.as_mut_ptr(), self.h, drift.h, sh, c, l, n, seed) })
    }

    /// The SDE likelihood estimate of each row of x and its standard error over paths.
    pub fn log_prob(
        &mut self,
        x: &[f32],
        drift: &mut Model,
        score: Option<&mut Model>,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.log_prob_ctx(x, drift, score, None, None, seed)
    }

    /// `log_prob` given each row's conditioning (as `sample_ctx`).
    pub fn log_prob_ctx(
        &mut self,
        x: &[f32],
        drift: &mut Model,
        score: Option<&mut Model>,
        ctx: Option<&[f32]>,
        labels: Option<&[i32]>,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let n = rows("x", x.len(), drift.d)?;
        let (c, l) = drift.cond(n, ctx, labels)?;
        let (mut lp, mut se) = (vec![0f32; n], vec![0f32; n]);
        let sh = score.map_or(ptr::null_mut(), |m| m.h);
        // SAFETY: lengths checked, handles valid.
        check(unsafe {
            sys::stochflow_sde_log_prob_ctx(
                lp.as_mut_ptr(),
                se.as_mut_ptr(),
                self.h,
                drift.h,
                sh,
                x.as_ptr(),
                c,
                l,
                n,
                seed,
            )
        })?;
        Ok((lp, se))
    }

    /// Evaluation times of the last call (drift and score together count one).
    pub fn nfe(&self) -> f64 {
        let mut v = 0.0;
        // SAFETY: valid handle and out-pointer.
        unsafe { sys::stochflow_sde_stat(&mut v, self.h, sys::STOCHFLOW_STAT_NFE) };
        v
    }
}
