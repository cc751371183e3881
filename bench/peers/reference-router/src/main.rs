//! The reference CLASP router (crates.io `clasp-router` 3.3.0) as a benchmark peer.
//!
//! ```text
//! reference-router --listen 127.0.0.1:7331 [--max-sessions 20000] [--rate-limit 0]
//! ```
//!
//! Default `RouterConfig` except: `max_sessions` 20000 (the reference default is 100) and the
//! per-session rate limit off (the reference default answers message 1001+ in a second with
//! ERROR 429), as in the reference's own benchmarks. `--rate-limit N` turns it back on at N msg/s.
//! Prints `ready` once the socket is listening.

use clasp_router::{Router, RouterConfig};
use clasp_transport::WebSocketServer;

fn usage() -> ! {
    eprintln!("usage: reference-router --listen ADDR:PORT [--max-sessions N] [--rate-limit N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut listen = None;
    let mut config = RouterConfig {
        max_sessions: 20_000,
        rate_limiting_enabled: false,
        ..RouterConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--max-sessions" => config.max_sessions = value.parse().unwrap_or_else(|_| usage()),
            "--rate-limit" => {
                let n: u32 = value.parse().unwrap_or_else(|_| usage());
                config.rate_limiting_enabled = n > 0;
                config.max_messages_per_second = n;
            }
            _ => usage(),
        }
    }
    let listen = listen.unwrap_or_else(|| usage());
    let server = match WebSocketServer::bind(&listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("reference-router: cannot listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    println!("ready");
    let router = Router::new(config);
    // Runs until killed (SIGTERM/SIGINT end the process).
    if let Err(e) = router.serve_on(server).await {
        eprintln!("reference-router: {e}");
        std::process::exit(1)
    }
}
