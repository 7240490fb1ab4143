//! Tests of the Rust binding's own behaviour: ownership, errors, slice checks, the whole
//! surface reaching the C library. The numerics are tested by the C suites.
use stochflow::{
    param_bounds, toy_log_density, toy_names, toy_sample, version, version_number, Activation,
    Config, ErrorKind, Model, Param, Solver, SolverKind, TimeEmbedding, Trace,
};

fn small() -> Model {
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_seed(3).unwrap();
    Model::new(&cfg).unwrap()
}

fn batch(n: usize, stream: u64) -> Vec<f32> {
    let mut v = vec![0f32; n * 2];
    toy_sample(&mut v, "moons", 1, stream).unwrap();
    v
}

#[test]
fn version_matches_project() {
    // The library loaded at run time is the one this crate was written for.
    assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    let (major, minor, patch): (i32, i32, i32) = (
        env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap(),
        env!("CARGO_PKG_VERSION_MINOR").parse().unwrap(),
        env!("CARGO_PKG_VERSION_PATCH").parse().unwrap(),
    );
    assert_eq!(version_number(), major * 10000 + minor * 100 + patch);
    // Under `meson test` the project's version is passed in too (never read from files
    // outside the crate, so `cargo test` works from any checkout or a packaged crate).
    if let Ok(project) = std::env::var("STOCHFLOW_PROJECT_VERSION") {
        assert_eq!(version(), project);
    }
}

#[test]
fn parameter_table_from_the_library() {
    let all = Param::all();
    assert!(all.len() >= 30);
    for (i, p) in all.iter().enumerate() {
        let name = p.name().unwrap();
        assert_eq!(Param::from_name(name).unwrap(), *p);
        assert_eq!(Param::from_key(p.key()), Some(*p));
        assert!(!all[..i].contains(p));
        let (lo, hi, _) = param_bounds(*p).unwrap();
        assert!(lo <= hi);
    }
    assert_eq!(Param::from_name("lr").unwrap(), Param::Lr);
    assert_eq!(Param::from_name("grad_clip").unwrap(), Param::GradClip);
    assert_eq!(Param::Rtol.name(), Some("rtol"));
    assert!(Param::Threads.is_model() && !Param::Solver.is_model());
    assert_eq!(
        Param::from_name("learning_rate").unwrap_err().kind,
        ErrorKind::Unsupported
    );
    assert_eq!(Param::from_key(150), None);
    assert_eq!(
        param_bounds(Param::from_key(100).unwrap()).unwrap(),
        param_bounds(Param::Lr).unwrap()
    );
}

#[test]
fn bounds_match_validation() {
    let mut m = small();
    let mut s = Solver::new().unwrap();
    for p in Param::all() {
        let (lo, hi, def) = param_bounds(p).unwrap();
        let below = if lo == 0.0 {
            -f64::MIN_POSITIVE
        } else {
            lo - lo.abs() * 1e-9
        };
        let above = hi + hi.abs() * 1e-9;
        let mut set = |v: f64| {
            if p.is_model() {
                m.set_param(p, v)
            } else {
                s.set_param(p, v)
            }
        };
        assert!(set(lo).is_ok(), "{:?} lo", p.name());
        assert!(set(hi).is_ok(), "{:?} hi", p.name());
        assert_eq!(
            set(below).unwrap_err().kind,
            ErrorKind::Invalid,
            "{:?}",
            p.name()
        );
        assert_eq!(
            set(above).unwrap_err().kind,
            ErrorKind::Invalid,
            "{:?}",
            p.name()
        );
        let got = if p.is_model() {
            m.get_param(p)
        } else {
            s.get_param(p)
        }
        .unwrap();
        assert_eq!(got, if hi == 0.0 { def } else { hi });
    }
}

#[test]
fn config_roundtrip() {
    let mut cfg = Config::new(3).unwrap();
    cfg.set_hidden(&[8, 4]).unwrap();
    cfg.set_activation(Activation::Tanh).unwrap();
    cfg.set_time_embedding(TimeEmbedding::Fourier(2)).unwrap();
    cfg.set_seed(11).unwrap();
    let m = Model::new(&cfg).unwrap();
    drop(cfg); // the model keeps its own copy
    let c = m.config().unwrap();
    assert_eq!(c.dim(), 3);
    assert_eq!(c.hidden(), vec![8, 4]);
    assert_eq!(c.activation(), Activation::Tanh as i32);
    assert_eq!(c.time_embedding(), TimeEmbedding::Fourier(2));
    assert_eq!(c.seed(), 11);
    assert_eq!(m.dim(), 3);
    assert!(m.num_params() > 0);
}

#[test]
fn resmlp_config_and_round_trip() {
    let mut cfg = Config::new(2).unwrap();
    assert_eq!(cfg.arch(), stochflow::Arch::Mlp);
    assert_eq!(cfg.set_resmlp(16, 0).unwrap_err().kind, ErrorKind::Invalid);
    assert_eq!(cfg.arch(), stochflow::Arch::Mlp);
    cfg.set_resmlp(16, 2).unwrap();
    cfg.set_seed(3).unwrap();
    assert_eq!(cfg.arch(), stochflow::Arch::ResMlp);
    assert_eq!(cfg.resmlp().unwrap(), (16, 2));
    let mut m = Model::new(&cfg).unwrap();
    // in 2 + 1 -> 16; 2 blocks of 2 x 16 (norm) + 2 x (16 x 16 + 16); norm; 16 -> 2
    assert_eq!(m.num_params(), 3 * 16 + 16 + 2 * (32 + 2 * 272) + 32 + 16 * 2 + 2);
    for k in 0..3 {
        m.train_step(&batch(32, k)).unwrap();
    }
    let mut l = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(l.config().unwrap().resmlp().unwrap(), (16, 2));
    assert_eq!(l.parameters().unwrap(), m.parameters().unwrap());
}

#[test]
fn resmlp_experts_config_and_round_trip() {
    let mut cfg = Config::new(2).unwrap();
    // the MLP has no experts
    assert_eq!(cfg.set_resmlp_experts(3).unwrap_err().kind, ErrorKind::Invalid);
    cfg.set_resmlp(16, 2).unwrap();
    assert_eq!(cfg.resmlp_experts().unwrap(), 0);
    assert_eq!(cfg.set_resmlp_experts(65).unwrap_err().kind, ErrorKind::Invalid);
    cfg.set_resmlp_experts(3).unwrap();
    assert_eq!(cfg.resmlp_experts().unwrap(), 3);
    let mut m = Model::new(&cfg).unwrap();
    // the plain network plus W_g [3 x 16], b_g [3], E [3*2 x 5], c [3*2]
    assert_eq!(m.num_params(), 3 * 16 + 16 + 2 * (32 + 2 * 272) + 32 + 16 * 2 + 2 + 48 + 3 + 30 + 6);
    for k in 0..3 {
        m.train_step(&batch(32, k)).unwrap();
    }
    let mut l = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(l.config().unwrap().resmlp_experts().unwrap(), 3);
    assert_eq!(l.parameters().unwrap(), m.parameters().unwrap());
}

#[test]
fn errors_carry_status_and_message() {
    let e = Config::new(0).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.status, -1);
    assert!(!e.message.is_empty());
    assert!(e.to_string().contains("invalid argument"));

    let mut m = small();
    let e = m.set_param(Param::Lr, -1.0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    let e = m.set_param(Param::Steps, 10.0).unwrap_err(); // a solver key on a model
    assert!(e.status < 0);

    let e = Model::load("/nonexistent/dir/m.sfm").err().unwrap();
    assert_eq!(e.kind, ErrorKind::Io);
    let e = Model::from_bytes(b"not a checkpoint").err().unwrap();
    assert!(matches!(e.kind, ErrorKind::Format | ErrorKind::Version));

    let mut x = vec![0f32; 4];
    assert_eq!(
        toy_sample(&mut x, "nope", 0, 0).unwrap_err().kind,
        ErrorKind::Invalid
    );
    let mut lp = vec![0f32; 2];
    assert_eq!(
        toy_log_density("moons", &x, &mut lp).unwrap_err().kind,
        ErrorKind::Unsupported
    );
    for s in -11..=-1 {
        assert_ne!(ErrorKind::from_status(s), ErrorKind::Other);
    }
}

#[test]
fn slice_lengths_are_checked_before_c() {
    let mut m = small();
    let x = vec![0f32; 5]; // not a multiple of d = 2
    assert_eq!(m.train_step(&x).unwrap_err().kind, ErrorKind::Invalid);
    let x = batch(4, 0);
    let mut v = vec![0f32; 7];
    let e = m.velocity(0.5, &x, &mut v).unwrap_err();
    assert!(e.message.contains("v has 7 values"), "{}", e.message);
    let t = vec![0.5f32; 3];
    assert!(m.train_step_with(&x, None, Some(&t)).is_err());
    assert_eq!(m.step(), 0);
    assert!(m.train_step(&[]).is_err());
}

#[test]
fn nonfinite_leaves_model_unchanged() {
    let mut m = small();
    let before = m.parameters().unwrap().to_vec();
    let mut x = batch(8, 0);
    x[3] = f32::NAN;
    assert_eq!(m.train_step(&x).unwrap_err().kind, ErrorKind::NonFinite);
    assert_eq!(m.parameters().unwrap(), &before[..]);
    assert_eq!(m.step(), 0);
}

#[test]
fn parameters_are_shared_and_writable() {
    let mut m = small();
    let x = batch(4, 0);
    let mut v = vec![0f32; 8];
    m.velocity(0.5, &x, &mut v).unwrap();
    assert!(v.iter().any(|&a| a != 0.0));
    m.parameters().unwrap().iter_mut().for_each(|p| *p = 0.0);
    m.velocity(0.5, &x, &mut v).unwrap();
    assert!(v.iter().all(|&a| a == 0.0));
}

#[test]
fn two_phase_step_equals_train_step() {
    let (mut a, mut b) = (small(), small());
    let x = batch(16, 2);
    let la = a.train_step(&x).unwrap();
    let lb = b.compute_gradient(&x).unwrap();
    assert_eq!(la, lb);
    assert!(b.gradients().unwrap().iter().any(|&g| g != 0.0));
    b.apply_gradient().unwrap();
    assert_eq!(a.step(), 1);
    assert_eq!(a.parameters().unwrap(), b.parameters().unwrap());
}

#[test]
fn training_sampling_and_density() {
    let mut m = small();
    m.set_param(Param::Lr, 1e-2).unwrap();
    assert_eq!(m.get_param(Param::Lr).unwrap(), 1e-2);
    for k in 0..20 {
        assert!(m.train_step(&batch(64, k)).unwrap().is_finite());
    }
    assert_eq!(m.step(), 20);
    let mut s = Solver::new().unwrap();
    s.set_solver(SolverKind::Rk4, 8).unwrap();
    let (x, lp) = s.sample_with_log_prob(&mut m, 10, 1).unwrap();
    assert_eq!((x.len(), lp.len()), (20, 10));
    assert_eq!(s.stats().unwrap().accepted, 8.0);
    let lp2 = s.log_prob(&mut m, &x, 1.0).unwrap();
    assert_eq!(lp2.len(), 10);
    assert!(lp2.iter().all(|v| v.is_finite()));
    // sampling's log-densities and log_prob's agree in kind: both new vectors of n values
    assert_eq!(lp.len(), lp2.len());
    s.set_trace(Trace::Hutchinson(4)).unwrap();
    let (lp3, se) = s.log_prob_with_se(&mut m, &x, 1.0).unwrap();
    assert_eq!((lp3.len(), se.len()), (10, 10));
    assert!(se.iter().all(|&v| v >= 0.0));
    assert!(s.log_prob(&mut m, &x[..3], 1.0).is_err()); // not a whole number of rows
    let mut y = x.clone();
    let mut dl = vec![0f32; 10];
    s.integrate(&mut m, &mut y, 1.0, 0.0, Some(&mut dl), None)
        .unwrap();
    assert_ne!(x, y);
    let mut div = vec![0f32; 10];
    m.divergence(0.3, &x, &mut div, None).unwrap();
    let mut out = vec![0f32; 20];
    m.velocity_vjp(0.3, &x, &x, &mut out).unwrap();
}

#[test]
fn save_load_and_bytes() {
    let mut m = small();
    for k in 0..3 {
        m.train_step(&batch(32, k)).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("stochflow-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.sfm");
    m.save(&path).unwrap();
    let mut l = Model::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(l.step(), 3);
    assert_eq!(l.parameters().unwrap(), m.parameters().unwrap());
    let x = batch(32, 9);
    assert_eq!(m.train_step(&x).unwrap(), l.train_step(&x).unwrap());
    let mut c = m.try_clone().unwrap();
    assert_eq!(c.to_bytes().unwrap(), m.to_bytes().unwrap());
    assert_eq!(c.parameters().unwrap(), m.parameters().unwrap());
}

#[test]
fn model_moves_between_threads() {
    let m = small();
    let mut m = std::thread::spawn(move || {
        let mut m = m;
        m.train_step(&batch(8, 0)).unwrap();
        m
    })
    .join()
    .unwrap();
    assert_eq!(m.step(), 1);
    m.train_step(&batch(8, 1)).unwrap();
}

#[test]
fn utilities() {
    let names = toy_names();
    assert!(names.iter().any(|n| n == "checkerboard"));
    let x = batch(50, 0);
    let mut lp = vec![0f32; 50];
    let mut cb = vec![0f32; 100];
    toy_sample(&mut cb, "checkerboard", 2, 0).unwrap();
    let ent = toy_log_density("checkerboard", &cb, &mut lp).unwrap();
    assert!((ent - 32f64.ln()).abs() < 1e-9);
    assert_eq!(x.len(), 100);
    let mut r = vec![0f32; 10];
    let mut r5 = vec![0f32; 5];
    stochflow::random_normal(&mut r, 4, 1).unwrap();
    stochflow::random_normal(&mut r5, 4, 1).unwrap();
    assert_eq!(&r[..5], &r5[..]);
    let mut u = vec![0f64; 20000];
    let mut u5 = vec![0f64; 5];
    stochflow::random_uniform(&mut u, 4, 1).unwrap();
    stochflow::random_uniform(&mut u5, 4, 1).unwrap();
    assert_eq!(&u[..5], &u5[..]);
    assert!(u.iter().all(|&v| (0.0..1.0).contains(&v)));
    let mean = u.iter().sum::<f64>() / u.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}"); // sd of the mean 0.002
    let (lo, hi, def) = param_bounds(Param::Lr).unwrap();
    assert!(lo <= def && def <= hi);
    let px = vec![0u8; 4 * 3 * 3];
    assert!(stochflow::png_write("/nonexistent/dir/a.png", &px, 4, 3, 3).is_err());
    assert!(stochflow::png_write("/tmp/x.png", &px, 4, 3, 2).is_err());
}

#[test]
fn fourier_interpolant_and_coupling() {
    use stochflow::{coupling_assign, Coupling, Interpolant};
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_fourier_interpolant(Interpolant::Trig, 3).unwrap();
    assert_eq!(
        cfg.fourier_interpolant().unwrap(),
        (Interpolant::Trig as i32, 3)
    );
    let mut m = Model::new(&cfg).unwrap();
    m.set_param(Param::Coupling, Coupling::Ot as i32 as f64)
        .unwrap();
    let (a, b) = m.interpolant_coefficients().unwrap();
    assert_eq!((a.len(), b.len()), (3, 3));
    assert_eq!(m.path_length().unwrap_err().kind, ErrorKind::Invalid);
    let ab = m.interpolant_eval(0.0).unwrap();
    assert_eq!((ab[0], ab[1]), (1.0, 0.0));
    for k in 0..3 {
        m.train_step(&batch(32, k)).unwrap();
    }
    assert_eq!(m.path_length().unwrap().1, 3);
    assert!(small().interpolant_coefficients().is_err());

    let x1 = batch(6, 0);
    let mut x0 = Vec::new();
    for i in (0..6).rev() {
        x0.extend_from_slice(&x1[i * 2..i * 2 + 2]);
    }
    let mut perm = vec![0usize; 6];
    let cost = coupling_assign(&mut perm, &x0, &x1, 2, Coupling::Ot, 0.0, 0).unwrap();
    assert_eq!(perm, vec![5, 4, 3, 2, 1, 0]);
    assert_eq!(cost, 0.0);
    assert!(coupling_assign(&mut perm[..5], &x0, &x1, 2, Coupling::Ot, 0.0, 0).is_err());
}

#[test]
fn conditional_model() {
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_context(3, 4).unwrap();
    assert_eq!(cfg.context().unwrap(), (3, 4));
    let mut m = Model::new(&cfg).unwrap();
    assert_eq!(m.context().unwrap(), (3, 4));
    m.set_param(Param::CtxDropout, 0.2).unwrap();
    let x = batch(8, 1);
    let ctx: Vec<f32> = (0..24).map(|i| (i as f32) * 0.1 - 1.0).collect();
    let labels: Vec<i32> = vec![0, 1, 2, 3, -1, 0, 1, 2];
    m.train_step_ctx(&x, Some(&ctx), Some(&labels)).unwrap();
    let (mut v1, mut v2) = (vec![0f32; 16], vec![0f32; 16]);
    m.velocity_ctx(0.5, &x, Some(&ctx), Some(&labels), &mut v1).unwrap();
    m.velocity_ctx(0.5, &x, None, None, &mut v2).unwrap();
    assert_ne!(v1, v2);
    // a wrong context length is refused before the call
    let err = m.velocity_ctx(0.5, &x, Some(&ctx[..5]), None, &mut v1).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    let mut s = Solver::new().unwrap();
    s.set_param(Param::Guidance, 1.0).unwrap();
    let mut xs = vec![0f32; 16];
    s.sample_ctx(&mut m, &mut xs, None, Some(&ctx), Some(&labels), 7).unwrap();
    let lp = s.log_prob_ctx(&mut m, &xs, Some(&ctx), Some(&labels), 1.0).unwrap();
    assert!(lp.iter().all(|v| v.is_finite()));
}

#[test]
fn simulator_training() {
    // theta ~ N(0, 1), x = theta + noise: draws keyed by (seed, step) through the library
    let mut cfg = Config::new(1).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_context(1, 0).unwrap();
    let mut m = Model::new(&cfg).unwrap();
    let sim = |seed: u64, step: u64, theta: &mut [f32], x: &mut [f32]| {
        stochflow::random_normal(theta, seed, 2 * step).unwrap();
        stochflow::random_normal(x, seed, 2 * step + 1).unwrap();
        for (xi, ti) in x.iter_mut().zip(theta.iter()) {
            *xi = *ti + 0.5 * *xi;
        }
        true
    };
    for _ in 0..3 {
        assert!(m.train_simulator(32, sim).unwrap().is_finite());
    }
    assert_eq!(m.step(), 3);
    let err = m.train_simulator(32, |_, _, _, _| false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Callback);
    let err = m.train_simulator(32, |_, _, _, _| panic!("simulator bug")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Callback);
    assert_eq!(m.step(), 3);
}

#[test]
fn batch_target_param_and_refusal() {
    let mut m = small();
    assert_eq!(m.get_param(Param::TrainTarget).unwrap(), 1.0);
    m.set_param(Param::TrainTarget, 2.0).unwrap();
    assert_eq!(m.get_param(Param::TrainTarget).unwrap(), 2.0);
    assert_eq!(m.set_param(Param::TrainTarget, 3.0).unwrap_err().kind, ErrorKind::Invalid);
    let x = batch(32, 1);
    m.train_step(&x).unwrap();
    // refused with a coupling: x0 is then not an independent draw per row
    let mut ot = small();
    ot.set_param(Param::TrainTarget, 2.0).unwrap();
    ot.set_param(Param::Coupling, 2.0).unwrap();
    assert_eq!(ot.train_step(&x).unwrap_err().kind, ErrorKind::Unsupported);
}
