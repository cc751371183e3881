//! What each request does to the registry: validate, register, refresh, unregister, discover,
//! and the per-source rate limit.

use super::*;

impl RendezvousService {
    /// Checks a registration against the field limits.
    pub(crate) fn validate(&self, r: &Registration) -> Result<(), Refusal> {
        let l = &self.inner.config.limits;
        let bad = |m: String| Err(Refusal::Invalid(m));
        if r.name.len() > l.name_bytes {
            return bad(format!("name is longer than {} bytes", l.name_bytes));
        }
        if r.public_key
            .as_ref()
            .is_some_and(|k| k.len() > l.public_key_bytes)
        {
            return bad(format!(
                "publicKey is longer than {} bytes",
                l.public_key_bytes
            ));
        }
        if r.endpoints.len() > l.endpoints {
            return bad(format!("more than {} endpoints", l.endpoints));
        }
        for (transport, url) in &r.endpoints {
            if transport.len() > l.item_bytes || url.len() > l.url_bytes {
                return bad(format!(
                    "endpoint names are limited to {} bytes and URLs to {} bytes",
                    l.item_bytes, l.url_bytes
                ));
            }
        }
        for (field, list) in [("tags", &r.tags), ("features", &r.features)] {
            if list.len() > l.list_items {
                return bad(format!("more than {} {field}", l.list_items));
            }
            if list.iter().any(|s| s.len() > l.item_bytes) {
                return bad(format!(
                    "{field} are limited to {} bytes each",
                    l.item_bytes
                ));
            }
        }
        if r.metadata.len() > l.metadata_entries {
            return bad(format!("more than {} metadata entries", l.metadata_entries));
        }
        let meta_bytes: usize = r.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if meta_bytes > l.metadata_bytes || r.metadata.keys().any(|k| k.len() > l.item_bytes) {
            return bad(format!(
                "metadata is limited to {} bytes in all and keys to {} bytes",
                l.metadata_bytes, l.item_bytes
            ));
        }
        Ok(())
    }

    /// Registers a device from `source`, evicting the least recently seen one at capacity.
    pub(crate) async fn register(
        &self,
        r: Registration,
        source: IpAddr,
    ) -> Result<Registered, Refusal> {
        self.validate(&r)?;
        let source = source_key(source);
        let cfg = &self.inner.config;
        let now = self.now();
        let wall = self.inner.clock.wall_micros();
        let id = uuid::Uuid::new_v4().to_string();
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let pending = {
            let mut reg = self.inner.registry.lock();
            let mut deletes = reg.expire(now);
            let held = reg.per_source.get(&source).copied().unwrap_or(0);
            if held >= cfg.max_devices_per_source {
                if !deletes.is_empty() {
                    let _ = self.queue(RecordBatch {
                        puts: Vec::new(),
                        deletes,
                    });
                }
                return Err(Refusal::SourceFull(cfg.max_devices_per_source));
            }
            while reg.devices.len() >= cfg.max_total_devices.max(1) {
                match reg.evict_oldest() {
                    Some(old) => {
                        tracing::debug!(id = %old, "rendezvous at capacity: evicted");
                        deletes.push(old);
                    }
                    None => break,
                }
            }
            let entry = Entry {
                device: Device {
                    id: id.clone(),
                    name: r.name,
                    public_key: r.public_key,
                    features: r.features,
                    endpoints: r.endpoints,
                    tags: r.tags,
                    metadata: r.metadata,
                    registered_at: wall,
                    last_seen: wall,
                },
                deadline: now.saturating_add(micros(cfg.ttl)),
                seq: 0,
                source,
                secret: secret.clone(),
            };
            let record = entry.record();
            reg.insert(id.clone(), entry);
            self.queue(RecordBatch {
                puts: vec![(id.clone(), record)],
                deletes,
            })
        };
        if let Some(done) = pending {
            let result = done
                .await
                .unwrap_or_else(|_| Err("the writer stopped".to_owned()));
            if let Err(e) = result {
                let mut reg = self.inner.registry.lock();
                if reg.remove(&id).is_some() {
                    let _ = self.queue(RecordBatch {
                        puts: Vec::new(),
                        deletes: vec![id],
                    });
                }
                return Err(Refusal::Storage(e));
            }
        }
        Ok(Registered {
            id,
            timestamp: wall,
            ttl: cfg.ttl.as_secs(),
            secret: Some(secret),
        })
    }

    /// A wrong secret is always refused; a missing one only when `required`.
    fn check_secret(entry: &Entry, secret: Option<&str>, required: bool) -> Result<(), Refusal> {
        match secret {
            Some(s) if secrets_match(s, &entry.secret) => Ok(()),
            Some(_) => Err(Refusal::WrongSecret),
            None if required => Err(Refusal::WrongSecret),
            None => Ok(()),
        }
    }

    /// Sets a live device's `lastSeen` to now (written at the next persist pass).
    pub(crate) fn refresh(&self, id: &str, secret: Option<&str>) -> Result<(), Refusal> {
        let now = self.now();
        let wall = self.inner.clock.wall_micros();
        let ttl = micros(self.inner.config.ttl);
        let mut reg = self.inner.registry.lock();
        let reg = &mut *reg;
        let entry = reg.devices.get_mut(id).ok_or(Refusal::NotFound)?;
        if entry.deadline <= now {
            reg.remove(id);
            let _ = self.queue(RecordBatch {
                puts: Vec::new(),
                deletes: vec![id.to_owned()],
            });
            return Err(Refusal::NotFound);
        }
        Self::check_secret(entry, secret, self.inner.config.require_secret_on_refresh)?;
        reg.by_deadline.remove(&(entry.deadline, entry.seq));
        entry.deadline = now.saturating_add(ttl);
        entry.seq = reg.next_seq;
        reg.next_seq += 1;
        entry.device.last_seen = wall;
        reg.by_deadline
            .insert((entry.deadline, entry.seq), id.to_owned());
        if self.inner.persistent {
            reg.dirty.insert(id.to_owned());
        }
        Ok(())
    }

    /// Removes a live device.
    pub(crate) async fn unregister(&self, id: &str, secret: Option<&str>) -> Result<(), Refusal> {
        let now = self.now();
        let pending = {
            let mut reg = self.inner.registry.lock();
            let entry = reg.devices.get(id).ok_or(Refusal::NotFound)?;
            let expired = entry.deadline <= now;
            if !expired {
                Self::check_secret(entry, secret, self.inner.config.require_secret)?;
            }
            reg.remove(id);
            let pending = self.queue(RecordBatch {
                puts: Vec::new(),
                deletes: vec![id.to_owned()],
            });
            if expired {
                return Err(Refusal::NotFound);
            }
            pending
        };
        if let Some(done) = pending {
            // The device is gone from memory either way; a failed delete is retried by the
            // writer with its next batch.
            if let Ok(Err(e)) = done.await {
                tracing::warn!(%id, error = %e, "rendezvous unregister not yet stored");
            }
        }
        Ok(())
    }

    /// Live devices, most recently seen first, filtered by exact tag and feature.
    pub(crate) fn discover(
        &self,
        tag: Option<&str>,
        feature: Option<&str>,
        limit: usize,
    ) -> Vec<Device> {
        let now = self.now();
        let reg = self.inner.registry.lock();
        reg.by_deadline
            .range((now.saturating_add(1), 0)..)
            .rev()
            .filter_map(|(_, id)| reg.devices.get(id))
            .filter(|e| tag.is_none_or(|t| e.device.tags.iter().any(|x| x == t)))
            .filter(|e| feature.is_none_or(|f| e.device.features.iter().any(|x| x == f)))
            .take(limit)
            .map(|e| e.device.clone())
            .collect()
    }

    /// Takes one token from `source`'s bucket; Err(wait) = refused, retry after `wait`.
    pub(crate) fn take_token(&self, source: IpAddr) -> Result<(), Duration> {
        let Some(limit) = self.inner.config.rate_limit else {
            return Ok(());
        };
        let source = source_key(source);
        let now = self.inner.clock.monotonic();
        let rate = limit.rate();
        let mut buckets = self.inner.buckets.lock();
        if !buckets.contains_key(&source) && buckets.len() >= self.inner.config.max_tracked_sources
        {
            prune_buckets(&mut buckets, now, rate);
            if buckets.len() >= self.inner.config.max_tracked_sources {
                return Err(Duration::from_secs(1));
            }
        }
        let bucket = buckets
            .entry(source)
            .or_insert_with(|| TokenBucket::full(rate, now));
        if bucket.take(1.0, rate, now) {
            Ok(())
        } else {
            Err(bucket.wait(1.0, rate))
        }
    }
}
