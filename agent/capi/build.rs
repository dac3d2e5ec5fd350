//! Gives the shared library the SONAME C programs record at link time: `libSaCkpt.so.1`,
//! the name OpenSAF's library has, so binaries built against either load the other.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libSaCkpt.so.1");
    println!("cargo:rerun-if-changed=build.rs");
}
