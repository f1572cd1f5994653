//! Build script: give every binary and test an rpath to the prebuilt libduckdb.
//!
//! `libduckdb-sys` (without the `bundled` feature) links against `DUCKDB_LIB_DIR` but does not
//! record where the library lives, so `odsync` would fail to start unless `LD_LIBRARY_PATH` were
//! set. The Makefile fetches the official prebuilt library into a cache and exports
//! `DUCKDB_LIB_DIR`; embedding that path as an rpath makes the binary self-sufficient.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR")
        && !dir.is_empty()
    {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
