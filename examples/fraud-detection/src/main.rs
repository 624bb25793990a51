//! The `fraud-detection` binary: the runtime's CLI (`run`, `coordinator`, `worker`, `check`,
//! `savepoint`, ...) with this crate's job registered next to the built-in ones.

/// The allocator of the `weir` binary (small short-lived allocations: glibc's malloc was a
/// third of a state-heavy job's profile).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(weir_runtime::cli::main(
        weir_example_fraud_detection::registry(),
    ));
}
