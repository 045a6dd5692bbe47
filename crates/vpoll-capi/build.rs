//! Generates `vpoll.h` with cbindgen and gives the cdylib libvpoll's SONAME.

use std::path::PathBuf;

fn main() {
    // Programs linked against libvpoll record `libvpoll.so.0`; the same SONAME lets them
    // load this library unmodified.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvpoll.so.0");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("reading cbindgen.toml: {e}"));
    // `with_src` parses lib.rs alone: the ABI lives there, and it spares a nested
    // `cargo metadata` run that `with_crate` would start.
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .unwrap_or_else(|e| panic!("generating vpoll.h: {e}"))
        .write_to_file(out.join("vpoll.h"));
}
