//! The ten-line example of doc/bindings.md (compiled by `cargo test`; run with
//! `cargo run --release --example quickstart`).
use stochflow::{toy_sample, Config, Model, Param, Solver, SolverKind};

fn main() -> Result<(), stochflow::Error> {
    let mut cfg = Config::new(2)?;
    cfg.set_hidden(&[64, 64])?;
    let mut m = Model::new(&cfg)?;
    m.set_param(Param::Lr, 2e-3)?;
    let mut batch = vec![0f32; 256 * 2];
    for step in 0..2000 {
        toy_sample(&mut batch, "moons", 1, step)?;
        m.train_step(&batch)?;
    }
    let mut s = Solver::new()?;
    s.set_solver(SolverKind::Rk4, 50)?;
    let (x, logp) = s.sample_with_log_prob(&mut m, 1000, 0)?;
    println!("first sample {:?}, log p {}", &x[..2], logp[0]);
    m.save("moons.sfm")?;
    Ok(())
}
