//! The `lefi` binary: parses the command line, sets up logging, and runs the chosen command.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory as _, FromArgMatches as _};
use lefi::cli::{Cli, Command};

/// mimalloc instead of the system allocator: the delivery path allocates many small, short-lived
/// values on several threads, where glibc's malloc took about a fifth of a snapshot's CPU
/// (profile in docs/BENCHMARKS.md). The crate's `override` feature (Cargo.toml) also makes it the
/// `malloc` of the C code linked in, the bundled SQLite above all: SQLite's values are allocated
/// on sqlx's worker thread and freed on the async side, where glibc's arenas cost the embedded
/// backend a sixth of a snapshot's CPU. Its `no_thp` feature keeps it from asking the kernel for
/// transparent huge pages, which made a server's memory under a slow reader a quarter larger.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(exit) => return exit,
    };
    lefi::telemetry::init(cli.effective_log_format(), &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(lefi::commands::run(cli))
}

/// Parses the command line. `--help` and `--version` print and exit 0; a usage error (an unknown
/// flag, a value clap cannot take) prints clap's message and exits 64 (EX_USAGE), the code of every
/// configuration error. For `serve`, records which values came from environment variables, so
/// that `config` names the variable in a problem.
fn parse() -> Result<Cli, ExitCode> {
    let usage = |e: clap::Error| {
        let _ = e.print();
        if e.exit_code() == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(lefi::commands::EXIT_USAGE)
        }
    };
    let matches = Cli::command().try_get_matches().map_err(usage)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(usage)?;
    if let (Command::Serve(args), Some(serve)) = (&mut cli.command, matches.subcommand_matches("serve")) {
        args.from_env = serve
            .ids()
            .filter(|id| serve.value_source(id.as_str()) == Some(ValueSource::EnvVariable))
            .map(|id| id.as_str().to_string())
            .collect();
    }
    Ok(cli)
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
