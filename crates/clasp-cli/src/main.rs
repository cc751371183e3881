//! `clasp`: run the CLASP router and work with it from the command line.

mod server;

use clap::{Parser, Subcommand};

/// CLASP: the signal router for creative work.
#[derive(Debug, Parser)]
#[command(name = "clasp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the CLASP router (WebSocket on port 7330, with /healthz and /metrics).
    Server(server::ServerArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
