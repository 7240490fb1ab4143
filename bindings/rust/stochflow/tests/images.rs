//! Image data and the U-Net configuration through the Rust binding. The
//! numerics are tested in C (tests/check_images.c); here ownership, slices and errors.
use std::io::Write;
use std::path::PathBuf;

use stochflow::{
    bits_per_dim, images_dequantize, images_load, images_quantize, images_to_float,
    images_write_grid, Arch, Config, ErrorKind, Model, UNet,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf-rs-images-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An IDX unsigned-byte file of the given dimensions (raw).
fn write_idx(path: &PathBuf, dims: &[u32], data: &[u8]) -> String {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&[0, 0, 8, dims.len() as u8]).unwrap();
    for d in dims {
        f.write_all(&d.to_be_bytes()).unwrap();
    }
    f.write_all(data).unwrap();
    format!("idx:{}", path.display())
}

#[test]
fn load_idx_and_planar_layout() {
    let dir = tmpdir("idx");
    let data: Vec<u8> = (0..2 * 2 * 3 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let src = write_idx(&dir.join("c.idx"), &[2, 2, 3, 3], &data);
    let im = images_load(&src, 0).unwrap();
    assert_eq!((im.count, im.channels, im.height, im.width), (2, 3, 2, 3));
    assert_eq!(im.pixels().len(), 36);
    for i in 0..2 {
        for c in 0..3 {
            for p in 0..6 {
                assert_eq!(im.image(i)[c * 6 + p], data[i * 18 + p * 3 + c]);
            }
        }
    }
    assert_eq!(images_load(&src, 1).unwrap().count, 1);
    // errors
    let e = images_load("bmp:/tmp", 0).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Invalid);
    let short = write_idx(&dir.join("s.idx"), &[2, 2, 2], &[0; 7]);
    let e = images_load(&short, 0).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Format);
    assert!(e.message.contains("truncated"), "{}", e);
    let labels = write_idx(&dir.join("l.idx"), &[3], &[1, 2, 3]);
    assert_eq!(
        images_load(&labels, 0).err().unwrap().kind,
        ErrorKind::Format
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quantize_roundtrip_and_bits() {
    let p: Vec<u8> = (0..=255u8).cycle().take(256 * 8).collect();
    let mut x = vec![0f32; p.len()];
    let mut q = vec![0u8; p.len()];
    images_to_float(&mut x, &p).unwrap();
    images_quantize(&mut q, &x).unwrap();
    assert_eq!(p, q);
    images_dequantize(&mut x, &p, 5, 1).unwrap();
    assert!(x.iter().all(|&v| (-1.0..1.0).contains(&v)));
    images_quantize(&mut q, &x).unwrap();
    assert_eq!(p, q);
    // prefix property
    let mut y = vec![0f32; 1500];
    images_dequantize(&mut y, &p[..1500], 5, 1).unwrap();
    assert_eq!(&x[..1500], &y[..]);
    // length mismatch is caught before the C call
    assert_eq!(
        images_to_float(&mut x[..3], &p).err().unwrap().kind,
        ErrorKind::Invalid
    );
    // bits per dimension: uniform on [-1, 1]^D -> 8
    for d in [1usize, 784, 3072] {
        assert!((bits_per_dim(-(d as f64) * std::f64::consts::LN_2, d) - 8.0).abs() < 1e-12);
    }
    assert!(bits_per_dim(0.0, 0).is_nan());
}

#[test]
fn write_grid_reads_back() {
    let dir = tmpdir("grid");
    let p: Vec<u8> = (0..5 * 12).map(|i| (i * 3 % 256) as u8).collect();
    let mut x = vec![0f32; p.len()];
    images_to_float(&mut x, &p).unwrap();
    images_write_grid(dir.join("g.png"), &x, 1, 3, 4, 0).unwrap();
    let g = images_load(&format!("pngdir:{}", dir.display()), 0).unwrap();
    assert_eq!((g.count, g.channels, g.height, g.width), (1, 1, 12, 20));
    let px = g.pixels();
    assert_eq!(px[0], 128);
    for y in 0..3 {
        for xx in 0..4 {
            assert_eq!(px[(2 + y) * 20 + 2 + xx], p[y * 4 + xx]);
        }
    }
    assert!(images_write_grid(dir.join("bad.png"), &x[..5], 1, 3, 4, 0).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unet_config_roundtrip() {
    let mut cfg = Config::new(64).unwrap();
    assert_eq!(cfg.arch(), Arch::Mlp);
    assert_eq!(cfg.unet().err().unwrap().kind, ErrorKind::Invalid);
    let u = UNet {
        base: 8,
        mult: vec![1, 2],
        attn_mask: 2,
        groups: 4,
        ..UNet::new(1, 8, 8)
    };
    cfg.set_unet(&u).unwrap();
    assert_eq!(cfg.arch(), Arch::UNet);
    assert_eq!(cfg.unet().unwrap(), u);
    let m = Model::new(&cfg).unwrap();
    assert_eq!(m.config().unwrap().unet().unwrap(), u);
    let bad = UNet {
        groups: 3,
        ..u.clone()
    };
    assert_eq!(cfg.set_unet(&bad).err().unwrap().kind, ErrorKind::Invalid);
}
