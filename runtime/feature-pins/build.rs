//! Empty: Cargo builds `[build-dependencies]` only for a package with a build script, and this
//! crate's build dependencies exist to pin the host side's features (see Cargo.toml).
fn main() {}
