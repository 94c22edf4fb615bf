use clap::Parser;

// Corruptions and tensors allocate and free large buffers for every image and batch; mimalloc
// keeps freed pages for reuse where the system allocator hands them back to the kernel (and
// then pays a page fault per 4 KiB to get them again).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
