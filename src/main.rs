use clap::Parser;

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
