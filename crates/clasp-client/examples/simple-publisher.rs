//! Publishes a counter: sets `/demo/counter` to 0, 1, 2, ... every 500 ms with a confirmed write
//! (printing the revision the router gave it) and fires a `/demo/tick` event after each write.
//!
//! ```sh
//! cargo run -p clasp-client --example simple-publisher -- ws://127.0.0.1:7330
//! ```
//!
//! Watch it with `clasp sub '/demo/**'` or the `simple-subscriber` example. Ctrl-C stops it.

use std::time::Duration;

use clasp_client::Client;

#[tokio::main]
async fn main() -> clasp_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:7330".to_string());
    let client = Client::builder(url)
        .name("simple-publisher")
        .connect()
        .await?;
    let mut every = tokio::time::interval(Duration::from_millis(500));
    for n in 0i64.. {
        tokio::select! {
            _ = every.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        // While the client reconnects (router restarted), writes fail; report and carry on.
        match client.set_confirmed("/demo/counter", n).await {
            Ok(revision) => println!("/demo/counter = {n} (revision {revision})"),
            Err(e) => eprintln!("write failed: {e}"),
        }
        if let Err(e) = client.emit("/demo/tick", n).await {
            eprintln!("emit failed: {e}");
        }
    }
    client.close().await;
    Ok(())
}
