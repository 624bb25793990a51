//! The `function-kinds` binary: the runtime's CLI with this crate's job registered.

fn main() {
    std::process::exit(weir_runtime::cli::main(weir_function_kinds::registry()));
}
