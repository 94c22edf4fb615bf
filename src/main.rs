use clap::Parser;

fn main() {
    let cli = robust_eval::cli::Cli::parse();
    if let Err(error) = robust_eval::cli::run(cli) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
