//! The `lefi` binary: parses the command line, sets up logging, and runs the chosen command.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the delivery path allocates many small, short-lived
/// values on several threads, where glibc's malloc took about a fifth of a snapshot's CPU
/// (profile in docs/BENCHMARKS.md). The crate's `override` feature (Cargo.toml) also makes it the
/// `malloc` of the C code linked in, the bundled SQLite above all: SQLite's values are allocated
/// on sqlx's worker thread and freed on the async side, where glibc's arenas cost the embedded
/// backend a sixth of a snapshot's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = lefi::cli::Cli::parse();
    lefi::telemetry::init(cli.log_format, &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(lefi::commands::run(cli))
}

/// `lefi client stream | head` closes stdout under us; the standard library then panics in
/// `println!`. Like other command-line tools, exit quietly (status 141, as for SIGPIPE) instead of
/// printing a panic. Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
