//! Runs the mapping engine against a router: subscribes to what the mappings read, records the
//! state found at start-up without acting on it, then turns every change into the writes the
//! engine asks for. Reconnects are the link's: the client resubscribes, and the state it is
//! sent again changes nothing that had not changed (the engine skips values already held).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clasp_mapping::Engine;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::link::{BridgeError, RouterLink};

/// Counters of a running mapper.
#[derive(Debug, Default)]
pub struct MapperStats {
    /// Updates the router delivered to it.
    pub updates: AtomicU64,
    /// Writes it made.
    pub writes: AtomicU64,
    /// Writes the router refused or that could not be sent.
    pub errors: AtomicU64,
}

impl MapperStats {
    /// (updates, writes, errors) now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.updates.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// A mapper that has subscribed and recorded the state it found, ready to [`Mapper::run`].
#[derive(Debug)]
pub struct Mapper {
    link: RouterLink,
    engine: Engine,
    subs: Vec<crate::link::LinkSubscription>,
}

impl Mapper {
    /// Subscribes to what `engine` reads and records the current state, acting on none of it.
    pub async fn start(link: RouterLink, mut engine: Engine) -> Result<Mapper, BridgeError> {
        let mut subs = Vec::new();
        for pattern in engine.subscriptions() {
            subs.push(link.subscribe(&pattern).await?);
        }
        // The router answers in order: once the PING is back, every subscription's current
        // state is in its buffer.
        link.sync().await?;
        let mut primed = 0usize;
        for s in &mut subs {
            while let Some(Some(u)) = s.next().now_or_never() {
                if u.kind == clasp_proto::SignalType::Param {
                    engine.prime(&u.address, &u.value);
                    primed += 1;
                }
            }
        }
        tracing::info!(
            mappings = engine.len(),
            subscriptions = subs.len(),
            primed,
            "mappings running"
        );
        Ok(Mapper { link, engine, subs })
    }

    /// Turns changes into writes until `stop` is cancelled or the link closes for good.
    pub async fn run(
        self,
        stats: Arc<MapperStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let Mapper {
            link,
            mut engine,
            subs,
        } = self;
        let mut all = futures_util::stream::select_all(subs);
        loop {
            let u = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                u = all.next() => u,
            };
            // Every subscription ended: the client is closed.
            let Some(u) = u else { return Ok(()) };
            stats.updates.fetch_add(1, Ordering::Relaxed);
            for w in engine.on_update(&u.address, &u.value, u.kind) {
                match link.write(&w).await {
                    Ok(()) => {
                        stats.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(address = %w.address, rule = w.rule + 1, error = %e, "mapping write failed");
                    }
                }
            }
        }
    }
}

/// Starts and runs `engine` on `link` (see [`Mapper`]).
pub async fn run(
    link: RouterLink,
    engine: Engine,
    stats: Arc<MapperStats>,
    stop: CancellationToken,
) -> Result<(), BridgeError> {
    Mapper::start(link, engine).await?.run(stats, stop).await
}
