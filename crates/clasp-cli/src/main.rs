//! `clasp`: run the CLASP router and work with it from the command line (`set`, `get`, `sub`,
//! `emit`, `query`, `ping`, `snapshot`), and manage its tokens (`token`).

mod server;
mod token;
mod tools;

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
    Server(Box<server::ServerArgs>),
    /// Manage the router's CPSK tokens (create, list, revoke).
    Token(token::TokenArgs),
    #[command(flatten)]
    Tool(tools::Tool),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Token(args) => token::run(args),
        Command::Tool(tool) => tools::run(tool),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
