//! The fit surface over the C trainer and the data readers: statistics, the callback,
//! same bits after a cancel + checkpoint + resume, errors that name the cell.
use stochflow::{
    parse_csv, parse_npy, toy_sample, Config, ErrorKind, Model, Param, SolverKind, Standardize,
    StopReason, Trainer, TrainerParam,
};

fn model(threads: f64) -> Model {
    let mut cfg = Config::new(2).unwrap();
    cfg.set_hidden(&[16, 16]).unwrap();
    cfg.set_seed(2).unwrap();
    let mut m = Model::new(&cfg).unwrap();
    m.set_param(Param::Lr, 3e-3).unwrap();
    m.set_param(Param::Threads, threads).unwrap();
    m
}

fn trainer(steps: f64) -> Trainer {
    let mut tr = Trainer::new().unwrap();
    tr.set_param(TrainerParam::BatchSize, 32.0).unwrap();
    tr.set_param(TrainerParam::MaxSteps, steps).unwrap();
    tr.set_solver(SolverKind::Rk4, 4).unwrap();
    tr
}

fn data() -> Vec<f32> {
    let mut x = vec![0f32; 200 * 2];
    toy_sample(&mut x, "moons", 1, 0).unwrap();
    x
}

#[test]
fn fit_with_validation_and_progress() {
    let x = data();
    let mut m = model(1.0);
    let mut tr = trainer(40.0);
    tr.set_param(TrainerParam::ValFraction, 0.25).unwrap();
    tr.set_param(TrainerParam::EvalEvery, 10.0).unwrap();
    let mut evals = Vec::new();
    tr.fit_with_progress(&mut m, &x, None, |step, _loss, val, _se| {
        if !val.is_nan() {
            evals.push(step);
        }
        false
    })
    .unwrap();
    assert_eq!(evals, vec![10, 20, 30, 40]);
    let st = tr.stats().unwrap();
    assert_eq!((st.steps, st.evals, st.stop), (40, 4, StopReason::Steps));
    assert_eq!((st.train_rows, st.val_rows), (150, 50));
    assert!(st.final_nll.is_finite() && st.final_se > 0.0);
    assert_eq!(m.step(), 40);
}

#[test]
fn resume_and_threads_give_the_same_bits() {
    let x = data();
    let mut a = model(1.0);
    trainer(25.0).fit(&mut a, &x, None).unwrap();
    let mut b = model(2.0);
    trainer(25.0).fit(&mut b, &x, None).unwrap();
    let mut c = model(1.0);
    let e = trainer(25.0)
        .fit_with_progress(&mut c, &x, None, |s, _, _, _| s == 9)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    let mut c = Model::from_bytes(&c.to_bytes().unwrap()).unwrap();
    assert_eq!(c.step(), 9);
    trainer(25.0).fit(&mut c, &x, None).unwrap();
    let pa = a.parameters().unwrap().to_vec();
    assert_eq!(pa, b.parameters().unwrap().to_vec());
    assert_eq!(pa, c.parameters().unwrap().to_vec());
}

#[test]
fn trainer_state_round_trip() {
    let x = data();
    let mut m = model(1.0);
    let mut tr = trainer(12.0);
    tr.set_param(TrainerParam::ValFraction, 0.2).unwrap();
    tr.set_param(TrainerParam::EvalEvery, 4.0).unwrap();
    assert!(tr.state_to_bytes().is_err()); // no fit yet
    tr.fit(&mut m, &x, None).unwrap();
    let st = tr.state_to_bytes().unwrap();
    let mut other = trainer(12.0);
    other.load_state(&st).unwrap();
    assert_eq!(other.state_to_bytes().unwrap(), st);
    assert_eq!(
        other.load_state(&st[1..]).unwrap_err().kind,
        ErrorKind::Format
    );
}

#[test]
fn errors_and_readers() {
    let mut x = data();
    x[7] = f32::NAN;
    let mut m = model(1.0);
    let e = trainer(5.0).fit(&mut m, &x, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NonFinite);
    assert!(e.message.contains("row 4, column 2"), "{}", e.message);
    assert_eq!(m.step(), 0);
    assert!(trainer(5.0).fit(&mut m, &x[..3], None).is_err()); // not a multiple of d
    let t = parse_csv(b"a,b\r\n1,2\r\n3.5,4\r\n", 0).unwrap();
    assert_eq!((t.rows, t.cols), (2, 2));
    assert_eq!(t.data, vec![1.0, 2.0, 3.5, 4.0]);
    let e = parse_csv(b"1,2\n3,NA\n", 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format);
    assert!(e.message.contains("row 2, column 2: 'NA'"), "{}", e.message);
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let dict = b"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
    let pad = 64 - (10 + dict.len() + 1) % 64;
    npy.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    npy.extend_from_slice(dict);
    npy.resize(npy.len() + pad, b' ');
    npy.push(b'\n');
    for v in [1f32, 2.0, 3.0, 4.0] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    let f = parse_npy(&npy, 0).unwrap();
    assert_eq!(f.data, vec![1.0, 3.0, 2.0, 4.0]); // Fortran order read as columns
}

#[test]
fn standardization_is_on_and_stored() {
    let x: Vec<f32> = data().iter().map(|v| 100.0 * v + 7.0).collect();
    let mut m = model(1.0);
    let mut tr = trainer(5.0);
    tr.fit(&mut m, &x, None).unwrap();
    let (shift, scale) = m.standardization().unwrap().expect("a map");
    assert!(scale.iter().all(|s| *s > 10.0), "{:?} {:?}", shift, scale);
    let z = m.standardize(&x[..4], false).unwrap();
    let back = m.standardize(&z, true).unwrap();
    for (a, b) in back.iter().zip(&x[..4]) {
        assert!((a - b).abs() < 1e-3 * b.abs().max(1.0));
    }
    assert!(m.set_standardization(None).is_err()); // trained: the map is fixed
}

#[test]
fn whitening_through_the_trainer() {
    // correlated columns: x2 = x1 + small noise, in large units
    let base = data();
    let x: Vec<f32> = base
        .chunks(2)
        .flat_map(|r| [100.0 * r[0] + 7.0, 100.0 * r[0] + 20.0 * r[1]])
        .collect();
    let mut m = model(1.0);
    let mut tr = trainer(5.0);
    tr.set_standardize(Standardize::Whiten).unwrap();
    tr.fit(&mut m, &x, None).unwrap();
    let l = m.whitening().unwrap().expect("a whitening map");
    assert_eq!(l[1], 0.0); // lower-triangular
    assert!(l[2] > 0.5, "{:?}", l); // the correlation is in the factor
    let (shift, scale) = m.standardization().unwrap().expect("a map");
    // z by hand: u = (x - shift) / scale, z = L^-1 u
    let u: Vec<f64> = (0..2).map(|k| (x[k] as f64 - shift[k]) / scale[k]).collect();
    let z0 = u[0] / l[0];
    let z1 = (u[1] - l[2] * z0) / l[3];
    let z = m.standardize(&x[..2], false).unwrap();
    assert!((z[0] as f64 - z0).abs() < 1e-5 && (z[1] as f64 - z1).abs() < 1e-5, "{:?}", z);
    // a collinear column is an error naming it; the model is left as it was
    let dup: Vec<f32> = base.chunks(2).flat_map(|r| [r[0], 2.0 * r[0]]).collect();
    let mut m2 = model(1.0);
    let e = tr.fit(&mut m2, &dup, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("column 2"), "{}", e.message);
    assert!(m2.standardization().unwrap().is_none());
    assert!(m.set_whitening(&shift, &scale, &l).is_err()); // trained: the map is fixed
}

#[test]
fn context_map_of_a_conditional_model() {
    let mk = || {
        let mut cfg = Config::new(2).unwrap();
        cfg.set_hidden(&[16]).unwrap();
        cfg.set_seed(4).unwrap();
        cfg.set_context(1, 0).unwrap();
        Model::new(&cfg).unwrap()
    };
    let (mut a, mut b) = (mk(), mk());
    let x = data();
    let c: Vec<f32> = (0..200).map(|i| 300.0 + 5.0 * (i % 17) as f32).collect();
    a.fit_context_standardization(&c).unwrap();
    assert!(b.context_standardization().unwrap().is_none());
    let (shift, scale) = a.context_standardization().unwrap().expect("a map");
    let cz: Vec<f32> = c.iter().map(|v| ((*v as f64 - shift[0]) / scale[0]) as f32).collect();
    let (mut va, mut vb) = (vec![0f32; x.len()], vec![0f32; x.len()]);
    a.velocity_ctx(0.3, &x, Some(&c), None, &mut va).unwrap();
    b.velocity_ctx(0.3, &x, Some(&cz), None, &mut vb).unwrap();
    assert_eq!(va, vb);
    a.set_context_standardization(None).unwrap();
    assert!(a.context_standardization().unwrap().is_none());
}
