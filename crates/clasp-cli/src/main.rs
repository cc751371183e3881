//! `clasp`: run the CLASP router and work with it from the command line (`set`, `get`, `sub`,
//! `emit`, `query`, `ping`, `snapshot`, `record`, `play`), and manage its tokens (`token`).

mod bridge;
mod cluster;
mod discover;
mod in_process;
mod journal;
mod play;
mod record;
mod relay;
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
    /// Run the relay: the router plus the rendezvous API (port 7340 and /api/v1), QUIC, TCP,
    /// MQTT and OSC listeners, and LAN discovery (mDNS and UDP broadcast).
    Relay(Box<relay::RelayArgs>),
    /// Run mappings between addresses against a router (`--config FILE` with `[[mapping]]`
    /// tables): scale, curves, expressions, both ways with feedback.
    Bridge(bridge::BridgeArgs),
    /// Find routers: on the LAN (mDNS and UDP broadcast) and through a rendezvous service.
    Discover(discover::DiscoverArgs),
    /// Manage the router's CPSK tokens (create, list, revoke).
    Token(token::TokenArgs),
    /// Record what a router carries under a pattern, with its timing, to a file.
    Record(record::RecordArgs),
    /// Play a recording back onto a router with its original timing.
    Play(play::PlayArgs),
    #[command(flatten)]
    Tool(tools::Tool),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Relay(args) => relay::run(*args),
        Command::Bridge(args) => bridge::run(args),
        Command::Discover(args) => discover::run(args),
        Command::Token(args) => token::run(args),
        Command::Record(args) => record::run(args),
        Command::Play(args) => play::run(args),
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
