//! The `dse-server` binary: everything lives in the `dse-server` library crate.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dse_server::main()
}
