//! Find libstochflow for linking, without external crates.
//!
//! Order: the STOCHFLOW_LIB_DIR environment variable (a directory holding
//! libstochflow.so; `meson test` sets it to the build tree), then the `pkg-config`
//! program (`pkg-config --libs-only-L stochflow`, honouring PKG_CONFIG_PATH), then the
//! linker's default search path. A found directory is also added as an rpath so that
//! test binaries run without LD_LIBRARY_PATH.
use std::env;
use std::process::Command;

fn add_dir(dir: &str) {
    println!("cargo:rustc-link-search=native={}", dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    println!("cargo:root={}", dir);
}

fn main() {
    println!("cargo:rerun-if-env-changed=STOCHFLOW_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(dir) = env::var("STOCHFLOW_LIB_DIR") {
        if !dir.is_empty() {
            add_dir(&dir);
            println!("cargo:rustc-link-lib=dylib=stochflow");
            return;
        }
    }
    let pc = Command::new("pkg-config")
        .args(["--libs-only-L", "stochflow"])
        .output();
    match pc {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            for flag in text.split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    add_dir(dir);
                }
            }
        }
        _ => println!(
            "cargo:warning=stochflow-sys: neither STOCHFLOW_LIB_DIR nor `pkg-config stochflow` \
             found libstochflow; relying on the linker's default search path"
        ),
    }
    println!("cargo:rustc-link-lib=dylib=stochflow");
}
