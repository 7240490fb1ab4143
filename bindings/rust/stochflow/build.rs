//! Give this crate's test and example binaries an rpath to the library directory that
//! stochflow-sys found (exported by its build script as DEP_STOCHFLOW_ROOT), so that
//! `cargo test` runs without LD_LIBRARY_PATH. Applications linking the crate choose
//! their own rpath or install libstochflow on the loader's path.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_STOCHFLOW_ROOT");
    if let Ok(dir) = std::env::var("DEP_STOCHFLOW_ROOT") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
}
