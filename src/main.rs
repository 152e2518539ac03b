//! The `dse-server` binary: everything lives in the `dse-server` library crate.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (include/mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // mimalloc purges freed memory after a delay, but only when the freeing thread calls
    // into the allocator again: an event loop that goes idle after a burst (a 100 MiB
    // reply, a large SET) would keep that memory for good. Purging at once returns it;
    // measured, it costs no throughput.
    // SAFETY: sets a process-wide allocator option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    dse_server::main()
}
