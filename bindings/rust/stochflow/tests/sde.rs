//! The stochastic-interpolant surface of the Rust binding: objectives in the
//! configuration and the checkpoint, SDE sampling and likelihood with a drift and a
//! score model, the ODE limit, refusals.
use stochflow::{toy_sample, Config, Gamma, Model, Objective, Param, Sde, Solver, SolverKind};

fn trained(obj: Option<(Objective, Gamma, bool)>, steps: u64) -> Model {
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_seed(3).unwrap();
    if let Some((o, g, a)) = obj {
        cfg.set_objective(o, g, a).unwrap();
    }
    let mut m = Model::new(&cfg).unwrap();
    let mut x = vec![0f32; 128 * 2];
    for s in 0..steps {
        toy_sample(&mut x, "8gaussians", 1, s).unwrap();
        m.train_step(&x).unwrap();
    }
    m
}

#[test]
fn objective_round_trip() {
    let m = trained(Some((Objective::Score, Gamma::BrownianScaled(0.5), true)), 0);
    let (f, g, sc, a) = m.config().unwrap().objective().unwrap();
    assert_eq!((f, g, sc, a), (3, 3, 0.5, true));
    let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(back.config().unwrap().objective().unwrap(), (f, g, sc, a));
    let mut cfg = Config::new(2).unwrap();
    assert!(cfg.set_objective(Objective::Score, Gamma::Zero, false).is_err());
}

#[test]
fn sde_sample_and_log_prob() {
    let mut drift = trained(Some((Objective::Drift, Gamma::Brownian, false)), 40);
    let mut score = trained(Some((Objective::Score, Gamma::Brownian, true)), 40);
    let mut s = Sde::new(&drift, Some(&score), 0.5, 10, true, 4).unwrap();
    let mut x = vec![0f32; 100 * 2];
    s.sample(&mut x, &mut drift, Some(&mut score), 1).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    assert_eq!(s.nfe(), 20.0);
    let (lp, se) = s.log_prob(&x[..20], &mut drift, Some(&mut score), 0).unwrap();
    assert!(lp.iter().all(|v| v.is_finite()) && se.iter().all(|v| *v > 0.0));
    assert!(Sde::new(&drift, None, 0.5, 10, true, 4).is_err()); // gamma model, no score
    assert!(Sde::new(&score, None, 0.5, 10, true, 4).is_err()); // a score model as drift
}

#[test]
fn sde_zero_is_the_heun_ode() {
    let mut v = trained(None, 20);
    let mut s = Sde::new(&v, None, 0.0, 10, true, 1).unwrap();
    let mut a = vec![0f32; 32 * 2];
    s.sample(&mut a, &mut v, None, 2).unwrap();
    let mut solver = Solver::new().unwrap();
    solver.set_solver(SolverKind::Heun, 10).unwrap();
    let mut b = vec![0f32; 32 * 2];
    solver.sample(&mut v, &mut b, None, 2).unwrap();
    assert_eq!(a, b);
}

#[test]
fn sde_conditional_guided() {
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_context(0, 3).unwrap();
    let mut m = Model::new(&cfg).unwrap();
    m.set_param(Param::CtxDropout, 0.2).unwrap();
    let mut x = vec![0f32; 64 * 2];
    let labels: Vec<i32> = (0..64).map(|i| (i % 4) as i32 - 1).collect();
    for s in 0..20 {
        toy_sample(&mut x, "8gaussians", 1, s).unwrap();
        m.train_step_ctx(&x, None, Some(&labels)).unwrap();
    }
    let lab: Vec<i32> = (0..32).map(|i| (i % 3) as i32).collect();
    // eps = 0, guided: the guided Heun ODE bit for bit
    let mut s = Sde::new(&m, None, 0.0, 10, true, 2).unwrap();
    s.set_guidance(1.5).unwrap();
    let (mut a, mut b) = (vec![0f32; 32 * 2], vec![0f32; 32 * 2]);
    s.sample_ctx(&mut a, &mut m, None, None, Some(&lab), 2).unwrap();
    let mut solver = Solver::new().unwrap();
    solver.set_solver(SolverKind::Heun, 10).unwrap();
    solver.set_param(Param::Guidance, 1.5).unwrap();
    solver.sample_ctx(&mut m, &mut b, None, None, Some(&lab), 2).unwrap();
    assert_eq!(a, b);
    // eps > 0 and the likelihood with Hutchinson divergences
    let mut s = Sde::new(&m, None, 0.5, 10, true, 3).unwrap();
    s.set_guidance(1.5).unwrap();
    s.set_hutchinson(true).unwrap();
    s.sample_ctx(&mut a, &mut m, None, None, Some(&lab), 2).unwrap();
    assert!(a.iter().all(|v| v.is_finite()) && a != b);
    let (lp, se) = s.log_prob_ctx(&a[..8], &mut m, None, None, Some(&lab[..4]), 1).unwrap();
    assert!(lp.iter().all(|v| v.is_finite()) && se.iter().all(|v| *v > 0.0));
    assert!(s.sample_ctx(&mut a, &mut m, None, None, Some(&lab[..3]), 2).is_err()); // length
}
