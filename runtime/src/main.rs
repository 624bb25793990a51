//! The `weir` binary with the built-in jobs.

/// mimalloc instead of glibc's malloc: records, state values and strings are small short-lived
/// allocations, which glibc's free lists (malloc_consolidate, unlink_chunk) made a third of
/// q19's profile; measured 1.2-2x events/s on the heap-state Nexmark queries (README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(weir_runtime::cli::main(
        weir_runtime::jobs::Registry::builtin(),
    ));
}
