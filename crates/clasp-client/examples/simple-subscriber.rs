//! Prints every update under `/demo/**` (params with their revision, events, streams...).
//!
//! ```sh
//! cargo run -p clasp-client --example simple-subscriber -- ws://127.0.0.1:7330
//! ```
//!
//! Pair it with the `simple-publisher` example. Ctrl-C stops it.

use clasp_client::Client;
use clasp_client::json::to_json;
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> clasp_client::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:7330".to_string());
    let client = Client::builder(url)
        .name("simple-subscriber")
        .connect()
        .await?;
    // Current params under the pattern arrive first, then every change as it happens.
    let mut updates = client.subscribe("/demo/**").await?;
    loop {
        let update = tokio::select! {
            u = updates.next() => u,
            _ = tokio::signal::ctrl_c() => break,
        };
        // The stream ends when the client is closed for good.
        let Some(u) = update else { break };
        let revision = u.revision.map(|r| format!(" rev {r}")).unwrap_or_default();
        println!(
            "{} = {}  [{}{revision}]",
            u.address,
            to_json(&u.value),
            u.kind.name()
        );
    }
    client.close().await;
    Ok(())
}
