//! The `fraud-detection` binary: the runtime's CLI (`run`, `coordinator`, `worker`, `check`,
//! `savepoint`, ...) with this crate's job registered next to the built-in ones.

fn main() {
    std::process::exit(weir_runtime::cli::main(
        weir_example_fraud_detection::registry(),
    ));
}
