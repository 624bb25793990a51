//! No code: this crate only pins dependency features so that the README's first command
//! (`cargo run -p weir-runtime`) and its test command (`cargo test --workspace`) build every
//! shared dependency once, with the same features. See this crate's Cargo.toml.
