use clap::Parser;

// Corruptions and tensors allocate and free large buffers for every image and batch; mimalloc
// keeps freed pages for reuse where the system allocator hands them back to the kernel (and
// then pays a page fault per 4 KiB to get them again).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the `mimalloc.h` (v3) of libmimalloc-sys 0.1.49, pinned in
/// Cargo.toml; the crate exports no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hand freed pages back to the kernel. With the default delay (1 s), a batch that takes
/// longer than that (a loaded machine, PGD on a large model) finds the previous batch's buffers
/// (activations, GEMM packing, Winograd spectra) purged and pays page faults that zero them anew:
/// ResNet-20's evaluation on 900 images took 7,300 faults and spent a quarter of its time clearing
/// pages on a loaded machine, 320 faults with this setting. The process keeps its peak footprint.
fn keep_freed_memory() {
    // SAFETY: sets a plain integer option; mimalloc reads it at each purge decision.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

fn main() {
    keep_freed_memory();
    // Die quietly when the reader of stdout goes away (`robust-eval models | head`), as Unix tools do.
    #[cfg(unix)]
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = robust_eval::cli::Cli::parse();
    let error_status = cli.command.error_status();
    match robust_eval::cli::run(cli) {
        Ok(status) => std::process::exit(status),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(error_status);
        }
    }
}
