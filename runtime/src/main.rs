//! The `weir` binary with the built-in jobs.

fn main() {
    std::process::exit(weir_runtime::cli::main(
        weir_runtime::jobs::Registry::builtin(),
    ));
}
