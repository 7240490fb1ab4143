//! Golden conformance: the Rust binding reproduces tests/data/golden.txt bit for bit (as do
//! the C suite check_golden and the Python test_golden.py). Keep the scenario identical.
use std::collections::BTreeMap;
use std::path::PathBuf;

use stochflow::{Activation, Config, Interpolant, Model, Param, Solver, SolverKind, Trace};

/// The record: STOCHFLOW_GOLDEN (set by `meson test`), else the source tree's copy when
/// the crate is built inside it; None outside the tree (a copied or packaged crate).
fn golden_path() -> Option<PathBuf> {
    match std::env::var("STOCHFLOW_GOLDEN") {
        Ok(p) => Some(PathBuf::from(p)),
        Err(_) => {
            let p =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/data/golden.txt");
            p.exists().then_some(p)
        }
    }
}

/// name -> (is_f64, bit patterns)
fn read_golden(path: PathBuf) -> BTreeMap<String, (bool, Vec<u64>)> {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {}", path.display(), e));
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let name = it.next().unwrap().to_string();
        let is_f64 = it.next().unwrap() == "f64";
        let count: usize = it.next().unwrap().parse().unwrap();
        let bits: Vec<u64> = it.map(|h| u64::from_str_radix(h, 16).unwrap()).collect();
        assert_eq!(bits.len(), count, "{}", name);
        out.insert(name, (is_f64, bits));
    }
    out
}

fn f32_bits(v: &[f32]) -> (bool, Vec<u64>) {
    (false, v.iter().map(|x| x.to_bits() as u64).collect())
}

fn moons(n: usize, seed: u64, stream: u64) -> Vec<f32> {
    let mut v = vec![0f32; n * 2];
    stochflow::toy_sample(&mut v, "moons", seed, stream).unwrap();
    v
}

fn run_scenario() -> BTreeMap<String, (bool, Vec<u64>)> {
    let mut rec = BTreeMap::new();
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[32, 32]).unwrap();
    cfg.set_activation(Activation::Silu).unwrap();
    cfg.set_interpolant(Interpolant::Trig).unwrap();
    cfg.set_seed(7).unwrap();
    let mut m = Model::new(&cfg).unwrap();
    m.set_param(Param::Lr, 1e-2).unwrap();
    m.set_param(Param::Threads, 1.0).unwrap();

    let losses: Vec<u64> = (0..25)
        .map(|k| m.train_step(&moons(64, 11, k)).unwrap().to_bits())
        .collect();
    rec.insert("losses".to_string(), (true, losses));
    rec.insert("params".to_string(), f32_bits(m.parameters().unwrap()));

    let pts = moons(8, 12, 0);
    let mut v = vec![0f32; 16];
    m.velocity(0.5, &pts, &mut v).unwrap();
    rec.insert("velocity".to_string(), f32_bits(&v));

    let mut s = Solver::new().unwrap();
    s.set_solver(SolverKind::Rk4, 16).unwrap();
    let (xs, lps) = s.sample_with_log_prob(&mut m, 8, 5).unwrap();
    rec.insert("samples".to_string(), f32_bits(&xs));
    rec.insert("sample_logp".to_string(), f32_bits(&lps));

    let lp = s.log_prob(&mut m, &pts, 1.0).unwrap();
    rec.insert("logp_exact".to_string(), f32_bits(&lp));
    s.set_trace(Trace::Hutchinson(3)).unwrap();
    s.set_seed(9).unwrap();
    let (lp, se) = s.log_prob_with_se(&mut m, &pts, 1.0).unwrap();
    rec.insert("logp_hutchinson".to_string(), f32_bits(&lp));
    rec.insert("se_hutchinson".to_string(), f32_bits(&se));

    let mut cfg = Config::new(2).unwrap();
    cfg.set_resmlp(16, 2).unwrap();
    cfg.set_seed(7).unwrap();
    let mut r = Model::new(&cfg).unwrap();
    r.set_param(Param::Lr, 1e-2).unwrap();
    r.set_param(Param::Threads, 1.0).unwrap();
    let losses: Vec<u64> = (0..10)
        .map(|k| r.train_step(&moons(64, 11, k)).unwrap().to_bits())
        .collect();
    rec.insert("res_losses".to_string(), (true, losses));
    rec.insert("res_params".to_string(), f32_bits(r.parameters().unwrap()));
    s.set_trace(Trace::Exact).unwrap();
    let lp = s.log_prob(&mut r, &pts, 1.0).unwrap();
    rec.insert("res_logp_exact".to_string(), f32_bits(&lp));

    let mut b = Model::new(&cfg).unwrap();
    b.set_param(Param::Lr, 1e-2).unwrap();
    b.set_param(Param::Threads, 1.0).unwrap();
    b.set_param(Param::TrainTarget, 2.0).unwrap();
    let losses: Vec<u64> = (0..10)
        .map(|k| b.train_step(&moons(64, 11, k)).unwrap().to_bits())
        .collect();
    rec.insert("bt_losses".to_string(), (true, losses));
    rec.insert("bt_params".to_string(), f32_bits(b.parameters().unwrap()));

    cfg.set_resmlp_experts(3).unwrap();
    let mut e = Model::new(&cfg).unwrap();
    e.set_param(Param::Lr, 1e-2).unwrap();
    e.set_param(Param::Threads, 1.0).unwrap();
    let losses: Vec<u64> = (0..10)
        .map(|k| e.train_step(&moons(64, 11, k)).unwrap().to_bits())
        .collect();
    rec.insert("ex_losses".to_string(), (true, losses));
    rec.insert("ex_params".to_string(), f32_bits(e.parameters().unwrap()));
    let lp = s.log_prob(&mut e, &pts, 1.0).unwrap();
    rec.insert("ex_logp_exact".to_string(), f32_bits(&lp));
    rec
}

#[test]
fn golden_bits() {
    let Some(path) = golden_path() else {
        eprintln!(
            "golden_bits skipped: no golden record (set STOCHFLOW_GOLDEN to tests/data/golden.txt)"
        );
        return;
    };
    let want = read_golden(path);
    let got = run_scenario();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (name, (is_f64, w)) in &want {
        let (g_f64, g) = &got[name];
        assert_eq!(is_f64, g_f64, "{}", name);
        assert_eq!(w.len(), g.len(), "{}", name);
        if let Some(i) = (0..w.len()).find(|&i| w[i] != g[i]) {
            let show = |b: u64| {
                if *is_f64 {
                    f64::from_bits(b)
                } else {
                    f32::from_bits(b as u32) as f64
                }
            };
            panic!(
                "{}[{}]: computed {:e}, golden {:e}",
                name,
                i,
                show(g[i]),
                show(w[i])
            );
        }
    }
}
